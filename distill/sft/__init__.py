"""Student fine-tuning on verified traces: full, LoRA or QLoRA, packed, resumable, merged for vLLM.

    from distill.sft import train, dry_run
    result = train(SFTConfig(model="bundled:tiny", train_file="kept.jsonl", output_dir="student"))
    result.merged_dir   # a Hugging Face folder vLLM loads
"""
from __future__ import annotations

# Imported eagerly so the package attribute `train` is the function, not the `train` submodule.
from distill.sft.data import build_example
from distill.sft.train import TrainResult, dry_run, train

__all__ = ["TrainResult", "build_example", "dry_run", "train"]
