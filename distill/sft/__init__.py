"""Student fine-tuning on verified traces: full, LoRA or QLoRA, packed, resumable, merged for vLLM.

    from distill.sft import train, dry_run
    result = train(SFTConfig(model="bundled:tiny", train_file="kept.jsonl", output_dir="student"))
    result.merged_dir   # a Hugging Face folder vLLM loads
"""
from __future__ import annotations

import logging


class SkipUnusedKernelNotice(logging.Filter):
    """Drop bitsandbytes' import-time notice that its optional CPU kernel (the `kernels` package) is missing.

    That kernel serves the packed NF4 layout for CPU inference, which distill switches off for training
    (modeling.keep_4bit_layout_trainable), so the notice says nothing about a distill run; every other
    record of that logger still shows. Installed here, before anything imports bitsandbytes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Failed to load CPU gemm_4bit_forward")


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(SkipUnusedKernelNotice())

# Imported eagerly so the package attribute `train` is the function, not the `train` submodule.
from distill.sft.data import build_example
from distill.sft.train import dry_run, train

__all__ = ["build_example", "dry_run", "train"]
