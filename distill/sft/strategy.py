"""Which multi-device strategy a run asked for (the launcher's environment), how the student is loaded
for it, and which strategy runs.

`accelerate launch --config_file recipes/accelerate/{ddp,fsdp,zero3}.yaml` tells the ranks what to do
through environment variables. accelerate 1.16 turns FSDP on only for accelerator ranks (CUDA, XPU, NPU,
...): CPU ranks always run as MULTI_CPU data parallelism (accelerate/state.py sets FSDP only in the
GPU-type branch, and wraps MULTI_CPU models in DDP). So on GPUs FSDP is accelerate's (fsdp.yaml's FSDP2
plugin, rank-0 loading); on CPU ranks (`shards_at_load`) the student is sharded by transformers' own FSDP2
instead (`from_pretrained(distributed_config=DistributedConfig(fsdp_size=world))`, torch's `fully_shard`
over a gloo mesh, each rank reading its shard), which transformers' Trainer then leaves unwrapped. That
path trains without intermediate checkpoints (transformers cannot checkpoint the optimizer state of a
model sharded at load), and only full fine-tuning: it exists so FSDP runs, and is tested, on CPUs.
DeepSpeed ZeRO-3 runs on CPU ranks through DeepSpeed's own CPU backend.

Sharded strategies also change *when* the model can run a forward pass: under FSDP with rank-0 loading the
other ranks hold empty weights, and under ZeRO-3 every rank holds a partition, until the trainer wraps the
model. The packing check therefore runs at the start of training there (`PackingCheckAtStart`), where
every rank takes part in the same forward passes.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from transformers import TrainerCallback

from distill.errors import DistillError
from distill.sft.packing import check_packing

SHARDED = ("fsdp", "deepspeed")


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def requested_strategy() -> str:
    """What the launcher asked for: deepspeed, fsdp, ddp (several ranks) or single."""
    if _flag("ACCELERATE_USE_DEEPSPEED"):
        return "deepspeed"
    if _flag("ACCELERATE_USE_FSDP"):
        return "fsdp"
    return "ddp" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "single"


def shards_at_load(method: str) -> bool:
    """FSDP asked for on CPU ranks: transformers shards the student as it loads (accelerate would not)."""
    if requested_strategy() != "fsdp" or torch.cuda.is_available():
        return False
    if method != "full":
        raise DistillError(
            f"FSDP on CPU ranks runs full fine-tuning only (sft.method={method}): a LoRA or QLoRA student fits "
            "one device, so launch it with recipes/accelerate/ddp.yaml; FSDP with adapters needs GPUs")
    return True


def model_loading(model) -> str:
    """How this rank holds the student after from_pretrained, before any trainer wrapping (the evidence that
    each strategy loaded the way it needs)."""
    from torch.distributed.tensor import DTensor

    parameters = list(model.parameters())
    if any(hasattr(p, "ds_id") for p in parameters):
        return "zero3_partition"  # zero.Init: each rank materialised only its partition
    if any(isinstance(p, DTensor) for p in parameters):
        return "fsdp_shard"  # transformers' FSDP2 at load: each rank read only its shard
    if any(p.device.type == "meta" for p in parameters):
        return "empty_until_wrapped"  # FSDP rank-0 loading, a rank other than 0
    return "whole_model"


def running_strategy(accelerator, model) -> str:
    if getattr(model, "is_distributed_loading_by_transformers", False):
        return "fsdp"
    kind = accelerator.distributed_type.value  # e.g. "FSDP", "DEEPSPEED", "MULTI_GPU", "MULTI_CPU", "NO"
    return {"FSDP": "fsdp", "DEEPSPEED": "deepspeed", "NO": "single"}.get(kind, "ddp")


def check_strategy(accelerator, model) -> str:
    """The strategy that runs; raises when the launcher asked for a sharded one that did not start."""
    requested, running = requested_strategy(), running_strategy(accelerator, model)
    if requested in SHARDED and running != requested:
        raise DistillError(
            f"the launcher asked for {requested} but accelerate runs these ranks as "
            f"{accelerator.distributed_type.value}, so every rank would hold the whole student; check the "
            f"accelerate config and the installed extras (see docs/scale.md)")
    return running


class PackingCheckAtStart(TrainerCallback):
    """Run the packing check on the wrapped model, on every rank, just before the first step."""

    def __init__(self, collator=None) -> None:
        self.collator = collator
        self.result: dict[str, Any] | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.result = check_packing(model, self.collator)
