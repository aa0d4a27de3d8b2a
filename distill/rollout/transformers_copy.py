"""Transformers rollouts: generate with a plain bf16 copy of the policy (CPUs without vLLM, GPUs without vLLM).

Measured on this CPU (SmolLM2-135M, 8 sequences x 32 tokens, bench/rl.py): a peft-wrapped fp32 policy
decodes several times slower than the same weights as plain bf16 linear layers (each LoRA layer adds two
small matmuls and dtype casts per token, and bf16 has native math here). So before each rollout the
trained weights are folded into a bf16 copy (LoRA: W + scale * B @ A per adapted layer; full: every
weight cast), and TRL's own generate path runs on that copy. The trainer's weights are never touched.
QLoRA keeps TRL's path (its base is 4-bit; a dequantized copy would cost the memory QLoRA saves).
`policy_weights` is also what the vLLM rollout engine reloads each step (rollout/vllm_engine.py).
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

_PEFT_PREFIX = "base_model.model."


@torch.no_grad()
def policy_weights(policy, *, adapted_only: bool = False) -> Iterator[tuple[str, torch.Tensor]]:
    """The policy's current weights under the base model's own names, LoRA deltas folded in.

    `adapted_only`: for a peft policy, only the layers LoRA changes (the rest equal the base model)."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer

    if not isinstance(policy, PeftModel):
        yield from policy.named_parameters()
        return
    adapted: set[str] = set()
    for name, module in policy.named_modules():
        if isinstance(module, LoraLayer) and module.active_adapters:
            weight = module.get_base_layer().weight.float()
            for adapter in module.active_adapters:
                weight = weight + module.get_delta_weight(adapter).float()
            key = name.removeprefix(_PEFT_PREFIX) + ".weight"
            adapted.add(key)
            yield key, weight
    if adapted_only:
        return
    for name, param in policy.named_parameters():
        if "lora_" in name:
            continue
        key = name.removeprefix(_PEFT_PREFIX).replace(".base_layer.", ".")
        if key not in adapted:
            yield key, param


class RolloutCopy:
    def __init__(self, model_path: str, dtype: torch.dtype = torch.bfloat16, device: str | None = None):
        from transformers import AutoModelForCausalLM

        # Loaded straight onto the policy's device: a copy on the CPU beside a GPU policy would decode on the CPU.
        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype, device_map=device)
        self.model.config.use_cache = True
        self.model.eval().requires_grad_(False)
        self.params = dict(self.model.named_parameters())

    @torch.no_grad()
    def sync(self, policy) -> None:
        """Copy the policy's current weights (adapters folded in) into the generation copy."""
        for name, weight in policy_weights(policy, adapted_only=True):
            if name in self.params:
                self.params[name].copy_(weight)
