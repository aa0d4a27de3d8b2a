"""Which multi-device strategy a run asked for (the launcher's environment) and which one runs.

`accelerate launch --config_file recipes/accelerate/{ddp,fsdp,zero3}.yaml` tells the ranks what to do
through environment variables. accelerate 1.15 turns FSDP and DeepSpeed on only for accelerator ranks
(CUDA, XPU, NPU, ...): CPU ranks always run as MULTI_CPU data parallelism (accelerate/state.py: FSDP is
set only in the GPU-type branch, DeepSpeed only `if not cpu`). Without a check, an FSDP or ZeRO-3 launch
on CPUs would silently train a full replica per rank; `check_strategy` stops it with the reason.

Sharded strategies also change *when* the model can run a forward pass: under FSDP with rank-0 loading the
other ranks hold empty weights, and under ZeRO-3 every rank holds a partition, until the trainer wraps the
model. The packing check therefore runs at the start of training there (`PackingCheckAtStart`), where
every rank takes part in the same forward passes.
"""
from __future__ import annotations

import os
from typing import Any

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


def running_strategy(accelerator) -> str:
    kind = accelerator.distributed_type.value  # e.g. "FSDP", "DEEPSPEED", "MULTI_GPU", "MULTI_CPU", "NO"
    return {"FSDP": "fsdp", "DEEPSPEED": "deepspeed", "NO": "single"}.get(kind, "ddp")


def check_strategy(accelerator) -> str:
    """The strategy that runs; raises when the launcher asked for a sharded one that did not start."""
    requested, running = requested_strategy(), running_strategy(accelerator)
    if requested in SHARDED and running != requested:
        raise DistillError(
            f"the launcher asked for {requested} but accelerate runs these ranks as "
            f"{accelerator.distributed_type.value}: accelerate only shards models over GPU-type devices, so "
            f"on CPUs every rank would hold the whole student. Launch with recipes/accelerate/ddp.yaml on "
            f"CPUs, or use GPUs for {requested} (see docs/scale.md)")
    return running


class PackingCheckAtStart(TrainerCallback):
    """Run the packing check on the wrapped model, on every rank, just before the first step."""

    def __init__(self) -> None:
        self.result: dict[str, Any] | None = None

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.result = check_packing(model)
