"""The student as the trainer gets it: precision, dtype and quantization by method, and the LoRA config.

    full   fp32 weights (the optimizer's master copy); bf16/fp16 only as autocast compute
    lora   frozen base in the compute dtype; adapters in fp32 (peft upcasts them)
    qlora  frozen base in bitsandbytes NF4 with the config's double quantization and compute dtype
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import torch

from distill.config import TrainingMethod
from distill.errors import DistillError
from distill.sft.memory import ParamCounts

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32,
          "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def resolve_precision(precision: str) -> str:
    """'auto': bf16 on GPUs that have it (else fp16); on CPUs bf16 only with native bf16 math
    (AVX512-BF16 or AMX; measured ~1.4x over fp32 on this AVX512-BF16 box), else fp32."""
    if torch.cuda.is_available():
        if precision == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return precision
    if precision == "fp16":
        raise DistillError("sft.precision=fp16 needs a GPU; use bf16 or fp32 on the CPU")
    if precision == "auto":
        return "bf16" if {"avx512_bf16", "amx_bf16"} & cpu_flags() else "fp32"
    return precision


def lora_config(config: TrainingMethod, new_token_ids: list[int] | None = None):
    """LoRA adapters; the rows of the chat template's turn tokens (`new_token_ids`: added, or never trained in a
    base model) are trained in full beside them, or the student could never learn to write its end-of-turn token."""
    from peft import LoraConfig

    lora = config.lora
    extra = {"trainable_token_indices": {"embed_tokens": list(new_token_ids)}} if new_token_ids else {}
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM", **extra)


def quantization_config(config: TrainingMethod):
    from transformers import BitsAndBytesConfig

    q = config.quant
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=q.quant_type,
                              bnb_4bit_use_double_quant=q.double_quant,
                              bnb_4bit_compute_dtype=DTYPES[q.compute_dtype],
                              bnb_4bit_quant_storage=DTYPES[q.compute_dtype])


def attention_implementation() -> str:
    """flash_attention_2 where it is installed (packed rows cost per example), else transformers' sdpa."""
    import importlib.util

    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def fit_embeddings(model, vocabulary: int) -> list[int]:
    """Grow the embeddings to a tokenizer that gained tokens (the recipe's chat template); returns the new ids."""
    rows = model.get_input_embeddings().num_embeddings
    if vocabulary <= rows:
        return []
    model.resize_token_embeddings(vocabulary, mean_resizing=True)  # new rows start at the mean embedding
    return list(range(rows, vocabulary))


def load_kwargs(config: TrainingMethod, precision: str, attn_implementation: str = "sdpa", *, on_gpu: bool,
                strategy: str = "single", local_rank: int = 0) -> dict:
    """from_pretrained's arguments for this method, device and launch (`strategy.requested_strategy()`)."""
    kwargs: dict = {"attn_implementation": attn_implementation}
    if config.method == "full":
        kwargs["dtype"] = torch.float32
    elif config.method == "lora":
        kwargs["dtype"] = DTYPES[precision]
    else:
        kwargs["dtype"] = DTYPES[config.quant.compute_dtype]
        kwargs["quantization_config"] = quantization_config(config)
        # A 4-bit model cannot be moved after loading: place it on this process's GPU up front. Not under
        # ZeRO-3, where transformers refuses a device_map (DeepSpeed places the partitions itself; the NF4
        # storage dtype is the compute dtype so the partitions flatten alike, quantization_config above).
        if on_gpu and strategy != "deepspeed":
            kwargs["device_map"] = {"": local_rank}
    return kwargs


def load_model(model_path: str, config: TrainingMethod, precision: str, attn_implementation: str = "sdpa",
               fsdp_size: int = 1):
    """`fsdp_size` > 1: transformers' own FSDP2 shards the student at load time, each rank reading its
    shard (distill.sft.strategy.shards_at_load says when)."""
    from accelerate import PartialState
    from transformers import AutoModelForCausalLM

    from distill.sft.strategy import requested_strategy

    on_gpu = torch.cuda.is_available()
    kwargs = load_kwargs(config, precision, attn_implementation, on_gpu=on_gpu, strategy=requested_strategy(),
                         local_rank=PartialState().local_process_index if on_gpu else 0)
    if fsdp_size > 1:
        from transformers.distributed import DistributedConfig

        kwargs["distributed_config"] = DistributedConfig(fsdp_size=fsdp_size)
        # Each rank reads its own shard here. fsdp.yaml's rank-0 loading (for accelerate, which broadcasts
        # rank 0's weights when it wraps the model) would otherwise leave the other ranks' shards empty.
        os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "false"
    try:
        model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    except OSError as exc:
        raise DistillError(f"cannot load the student '{model_path}': {exc}") from None
    # Training never uses the KV cache, and with one transformers would stop separating packed examples.
    model.config.use_cache = False
    if config.method == "qlora":
        keep_4bit_layout_trainable(model)
    return model


def keep_4bit_layout_trainable(model) -> int:
    """Stop bitsandbytes repacking NF4 weights for its CPU inference kernel during an eval forward.

    On CPUs with AVX512-BF16, bitsandbytes 0.50 rewrites each 4-bit weight into a packed layout the first
    time it runs in eval mode without grad, and that layout's kernel has no autograd: every backward after
    the first evaluation (or the packing check) would give silently wrong gradients (measured: relative
    error 1.27 on the adapters). The flag is per-module; we clear it so the layout stays the trainable one.
    """
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def count_parameters(model_path: str, config: TrainingMethod) -> tuple[ParamCounts, object]:
    """Parameter counts (and the model config) from config.json alone: built on the meta device, no weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        model_config = AutoConfig.from_pretrained(model_path)
    except OSError as exc:
        raise DistillError(f"cannot read the config of '{model_path}' ({exc}). Offline, fetch it first: "
                           f"`huggingface-cli download {model_path} config.json`") from None
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config)
    total = sum(p.numel() for p in model.parameters())
    layers = getattr(getattr(model, "model", model), "layers", [])
    quantizable = sum(m.weight.numel() for layer in layers for m in layer.modules()
                      if isinstance(m, torch.nn.Linear))
    layer_max = max((sum(p.numel() for p in layer.parameters()) for layer in layers), default=0)
    if config.method == "full":
        trainable = total
    else:
        from peft import get_peft_model

        with torch.device("meta"):  # the adapters too: initialising 70B's on the CPU took 90 s
            peft_model = get_peft_model(model, lora_config(config))
        trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in peft_model.parameters())
    return ParamCounts(total=total, trainable=trainable, quantizable=quantizable, layer_max=layer_max), model_config


def checkpoint_bytes(model_path: str, model_config, parameters: int) -> float:
    """Bytes of the weight files (a local folder), else parameters x the dtype config.json names."""
    folder = Path(model_path)
    if folder.is_dir():
        files = list(folder.glob("*.safetensors")) or list(folder.glob("*.bin"))
        if files:
            return float(sum(f.stat().st_size for f in files))
    dtype = str(getattr(model_config, "dtype", None) or getattr(model_config, "torch_dtype", None) or "float32")
    return float(parameters * (4 if "32" in dtype else 2))
