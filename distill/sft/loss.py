"""Which LM-head loss path a run takes, decided once for the trainer and the memory estimate alike.

    liger        Liger's layer kernels (`sft.liger`; CUDA with liger-kernel installed) with TRL's tiled LM
                 head for the loss. TRL 1.16 turns Liger's own fused cross-entropy off (it would replace the
                 forward that carries the tiled head), so the loss must go through SFTTrainer's
                 `compute_loss`: through the model's own cross-entropy it would build the full logits.
    trl_chunked  TRL's tiled LM head (Triton on CUDA/XPU): log-probs in tiles, never the full logits
    full_logits  the model's own cross-entropy: [tokens x vocabulary] logits, their fp32 upcast, the
                 log-softmax kept for backward and its gradient. The CPU path: without Triton TRL's tiled
                 head is a Python loop that measured 1.4-2x slower per step here.

The decision takes the machine's facts as arguments (`Machine`), so it is tested for a GPU machine on a CPU one.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

PATHS = ("liger", "trl_chunked", "full_logits")
TILED = ("liger", "trl_chunked")  # the paths whose loss runs through TRL's tiled head


@dataclass(frozen=True)
class Machine:
    cuda: bool
    liger_installed: bool
    triton: bool

    @classmethod
    def here(cls) -> Machine:
        from transformers.utils import is_triton_available

        accelerator = torch.cuda.is_available() or bool(getattr(torch, "xpu", None) and torch.xpu.is_available())
        return cls(cuda=torch.cuda.is_available(),
                   liger_installed=importlib.util.find_spec("liger_kernel") is not None,
                   triton=accelerator and is_triton_available())


def use_liger(liger: str, machine: Machine | None = None) -> bool:
    """`sft.liger`: on, off, or auto (on where it runs: a CUDA device with liger-kernel installed)."""
    machine = machine or Machine.here()
    if liger == "auto":
        return machine.cuda and machine.liger_installed
    return liger == "on"


def loss_path(liger: str, *, on_gpu: bool | None = None, machine: Machine | None = None,
              logit_kd: bool = False) -> str:
    """The path this machine takes; `on_gpu=True` asks what a GPU machine with the kernels would take (plans).
    Offline logit KD (`sft.logit_kd`) needs the student's logits at every trained token: full_logits (the config
    refuses `liger: on` with it)."""
    if logit_kd:
        return "full_logits"
    if on_gpu:
        machine = Machine(cuda=True, liger_installed=True, triton=True)
    machine = machine or Machine.here()
    if use_liger(liger, machine):
        return "liger"
    return "trl_chunked" if machine.triton else "full_logits"


def tiled_head(path: str) -> bool:
    """Whether the trainer must hand the loss to TRL's tiled head (SFTTrainer.compute_loss)."""
    return path in TILED
