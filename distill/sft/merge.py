"""The student as vLLM loads it: adapters merged into a full-precision base, and a generation config that stops.

QLoRA adapters are merged into the base loaded unquantized (in its own dtype), not into the 4-bit weights:
merging into NF4 would round the update away and leave a model vLLM cannot load as a plain checkpoint.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from distill.config import TrainingMethod
from distill.errors import DistillError
from distill.files import publish_dir, read_json


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


def save_in_precision(model_dir: Path, precision: str) -> int:
    """Rewrite a full fine-tune's fp32 weight files in the training precision; returns the tensors cast.

    A full fine-tune keeps fp32 master weights, so the Trainer saves fp32: twice the disk and load time of
    the bf16 student, and vLLM's dtype=auto would then serve it in fp32. Casting after training loses
    nothing the bf16 forward passes used. Shard by shard, so the RAM needed is one shard.
    """
    import json

    import torch
    from safetensors.torch import load_file, save_file

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    if dtype is None:
        return 0
    model_dir = Path(model_dir)
    cast = 0
    total = 0
    for path in sorted(model_dir.glob("*.safetensors")):
        tensors = load_file(path)
        for name, tensor in tensors.items():
            if tensor.dtype == torch.float32:
                tensors[name] = tensor.to(dtype)
                cast += 1
            total += tensors[name].numel() * tensors[name].element_size()
        save_file(tensors, str(path.with_suffix(".tmp")), metadata={"format": "pt"})
        path.with_suffix(".tmp").replace(path)
    index = model_dir / "model.safetensors.index.json"
    if index.exists():
        data = json.loads(index.read_text())
        data.setdefault("metadata", {})["total_size"] = total
        index.write_text(json.dumps(data, indent=2))
    config_path = model_dir / "config.json"
    if config_path.exists():
        config = json.loads(config_path.read_text())
        config["dtype"] = str(dtype).removeprefix("torch.")
        config.pop("torch_dtype", None)
        config_path.write_text(json.dumps(config, indent=2))
    return cast


def merge_adapter(adapter_dir: Path, merged_dir: Path, *, base_path: str | None = None,
                  stop_id: int | None = None) -> Path:
    """Load the base in its own dtype, apply the adapter, fold it in, save model + tokenizer atomically.

    `base_path` defaults to the adapter's own `base_model_name_or_path` (what eval gets handed), `stop_id`
    to the tokenizer's EOS; an adapter saved without its tokenizer uses the base model's.
    """
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from distill.models import resolve_model

    adapter_dir = Path(adapter_dir)
    if base_path is None:
        base_spec = read_json(adapter_dir / "adapter_config.json").get("base_model_name_or_path")
        if not base_spec:
            raise DistillError(f"{adapter_dir}/adapter_config.json: no base_model_name_or_path; cannot merge")
        base_path = resolve_model(base_spec)
    from distill.sft.modeling import fit_embeddings

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype="auto")
    tokenizer = AutoTokenizer.from_pretrained(
        adapter_dir if (adapter_dir / "tokenizer_config.json").exists() else base_path)
    fit_embeddings(base, len(tokenizer))  # the adapter was trained on embeddings grown for its chat template
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.config.use_cache = True
    tmp = merged_dir.with_name(f".{merged_dir.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    stop_id = tokenizer.eos_token_id if stop_id is None else stop_id
    if stop_id is not None:
        ensure_stop_token(tmp, stop_id)
    del merged, base
    return publish_dir(tmp, merged_dir)


def finished_folders(config: TrainingMethod, out: Path, model_path: str, stop_id: int | None, *,
                     merge_here: bool = True) -> tuple[Path | None, Path | None]:
    """(adapter folder, folder vLLM loads) of a finished SFT, RL or KD run (`config.method`, `config.merge`);
    merges the adapter once if that folder is missing and this process is the one that writes."""
    if config.method == "full":
        return None, out / "model"
    adapter_dir = out / "adapter"
    if not config.merge:
        return adapter_dir, None
    merged_dir = out / "merged"
    if merge_here and not (merged_dir / "config.json").exists():
        merge_adapter(adapter_dir, merged_dir, base_path=model_path, stop_id=stop_id)
    return adapter_dir, merged_dir


def starting_model(spec: str, into: Path) -> str:
    """The model a trainer starts from: a folder or hub id as it is; an adapter folder merged into its base
    first, once, in `into` (RL's policy and on-policy distillation's student both start this way)."""
    import json

    from distill.models import resolve_model

    path = resolve_model(spec)
    adapter = Path(path) / "adapter_config.json"
    if not adapter.exists():
        return path
    base = json.loads(adapter.read_text()).get("base_model_name_or_path")
    if not base:
        raise DistillError(f"{adapter}: no base_model_name_or_path, so the adapter's base model is unknown")
    if not (into / "config.json").exists():
        merge_adapter(Path(path), into, base_path=resolve_model(base))  # stops on the adapter's EOS
    return str(into)

