"""The student as vLLM loads it: adapters merged into a full-precision base, and a generation config that stops.

QLoRA adapters are merged into the base loaded unquantized (in its own dtype), not into the 4-bit weights:
merging into NF4 would round the update away and leave a model vLLM cannot load as a plain checkpoint.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path


def publish_dir(tmp: Path, final: Path) -> Path:
    """Replace `final` with the finished folder `tmp` (a reader never sees a half-written model)."""
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    return final


def ensure_stop_token(model_dir: Path, stop_id: int) -> None:
    """Make the end-of-turn token the model was trained on stop generation (vLLM reads generation_config)."""
    from transformers import GenerationConfig

    try:
        generation = GenerationConfig.from_pretrained(model_dir)
    except OSError:
        generation = GenerationConfig()
    eos = generation.eos_token_id
    ids = [] if eos is None else ([eos] if isinstance(eos, int) else list(eos))
    if stop_id not in ids:
        generation.eos_token_id = [stop_id, *ids] if ids else stop_id
        generation.save_pretrained(model_dir)


def merge_adapter(base_path: str, adapter_dir: Path, merged_dir: Path, stop_id: int) -> Path:
    """Load the base in its own dtype, apply the adapter, fold it in, save model + tokenizer atomically."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype="auto")
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.config.use_cache = True
    tmp = merged_dir.with_name(f".{merged_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(tmp)
    ensure_stop_token(tmp, stop_id)
    del merged, base
    return publish_dir(tmp, merged_dir)
