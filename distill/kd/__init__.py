"""Distillation from the teacher's log-probabilities: on-policy (reverse KL on the student's own samples) and
offline logit KD (forward KL over the teacher's stored top-k).

    from distill.kd import KDConfig, train
    result = train(KDConfig(model="bundled:tiny", teacher="bundled:smollm2-135m-instruct",
                            problems="train.jsonl", output_dir="runs/kd", max_steps=20))
    result.policy      # the folder vLLM and `distill eval` load
"""
from __future__ import annotations

from distill.kd.config import KDConfig, OfflineKDConfig

__all__ = ["KDConfig", "OfflineKDConfig", "check_tokenizers", "dry_run", "train"]


def __getattr__(name: str):
    # The trainer imports torch and transformers; the config alone (recipes, schema) must not.
    import importlib

    if name in ("train", "dry_run"):
        return getattr(importlib.import_module("distill.kd.onpolicy"), name)
    if name == "check_tokenizers":
        return importlib.import_module("distill.kd.teacher").check_tokenizers
    raise AttributeError(name)
