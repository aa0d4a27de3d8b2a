"""Which LM-head loss path a run takes, decided once for the trainer and the memory estimate alike.

    liger        Liger's fused linear cross-entropy (`sft.liger`; CUDA with liger-kernel installed):
                 logits are computed and consumed in chunks, never whole
    trl_chunked  TRL's tiled LM head (Triton on CUDA/XPU): log-probs in tiles, never the full logits
    full_logits  the model's own cross-entropy: [tokens x vocabulary] logits, their fp32 upcast, the
                 log-softmax kept for backward and its gradient. The CPU path: without Triton TRL's tiled
                 head is a Python loop that measured 1.4-2x slower per step here.
"""
from __future__ import annotations

import importlib.util

import torch

PATHS = ("liger", "trl_chunked", "full_logits")


def fused_loss_available() -> bool:
    """TRL's tiled LM-head kernel is fast where Triton runs it (CUDA/XPU); elsewhere it is a slow Python loop."""
    from transformers.utils import is_triton_available

    return is_triton_available() and (torch.cuda.is_available() or bool(getattr(torch, "xpu", None)
                                                                          and torch.xpu.is_available()))


def use_liger(liger: str) -> bool:
    """`sft.liger`: on, off, or auto (on where it runs: a CUDA device with liger-kernel installed)."""
    if liger == "auto":
        return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None
    return liger == "on"


def loss_path(liger: str, *, on_gpu: bool | None = None) -> str:
    """The path this machine takes; `on_gpu=True` asks what a GPU machine with the kernels would take (plans)."""
    if on_gpu:
        return "liger" if liger == "on" else "trl_chunked"
    if use_liger(liger):
        return "liger"
    return "trl_chunked" if fused_loss_available() else "full_logits"
