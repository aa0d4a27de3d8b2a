"""The RL stage: GRPO with rule-based rewards (R1-Zero, and RL after distillation).

    from distill.rl import train, dry_run, reward
    result = train(RLConfig(model="bundled:smollm2-135m-instruct", problems="train.jsonl", output_dir="policy"))
    result.merged_dir   # a Hugging Face folder vLLM loads
"""
from __future__ import annotations

from distill.rl.rewards import Completion, reward

__all__ = ["Completion", "dry_run", "reward", "train"]


def __getattr__(name: str):
    # The trainer imports torch and TRL; the reward workers import this package and must not.
    if name in ("train", "dry_run"):
        import importlib

        return getattr(importlib.import_module("distill.rl.grpo"), name)
    raise AttributeError(name)
