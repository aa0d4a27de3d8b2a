"""Faster transformers rollouts on CPUs: generate with a plain bf16 copy of the policy.

Measured on this CPU (SmolLM2-135M, 8 sequences x 32 tokens, bench/rl.py): a peft-wrapped fp32 policy
decodes several times slower than the same weights as plain bf16 linear layers (each LoRA layer adds two
small matmuls and dtype casts per token, and bf16 has native math here). So before each rollout the
trained weights are folded into a bf16 copy (LoRA: W + scale * B @ A per adapted layer; full: every
weight cast), and TRL's own generate path runs on that copy. The trainer's weights are never touched.
QLoRA keeps TRL's path (its base is 4-bit; a dequantized copy would cost the memory QLoRA saves).
"""
from __future__ import annotations

import torch


class RolloutCopy:
    def __init__(self, model_path: str, dtype: torch.dtype = torch.bfloat16):
        from transformers import AutoModelForCausalLM

        self.model = AutoModelForCausalLM.from_pretrained(model_path, dtype=dtype)
        self.model.config.use_cache = True
        self.model.eval().requires_grad_(False)
        self.params = dict(self.model.named_parameters())

    @torch.no_grad()
    def sync(self, policy) -> None:
        """Copy the policy's current weights (adapters folded in) into the generation copy."""
        from peft import PeftModel
        from peft.tuners.lora import LoraLayer

        if not isinstance(policy, PeftModel):
            for name, param in policy.named_parameters():
                if name in self.params:
                    self.params[name].copy_(param)
            return
        prefix = "base_model.model."
        for name, module in policy.named_modules():
            if isinstance(module, LoraLayer) and module.active_adapters:
                key = name.removeprefix(prefix) + ".weight"
                weight = module.get_base_layer().weight.float()
                for adapter in module.active_adapters:
                    weight = weight + module.get_delta_weight(adapter).float()
                self.params[key].copy_(weight)
