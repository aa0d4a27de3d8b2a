"""distill: turn a reasoning teacher into smaller reasoning students, the DeepSeek-R1 way.

    import distill
    recipe = distill.load_recipe("recipes/demo.yaml", ["sft.lora.r=32"])
    distill.generate(recipe.generate)          # teacher traces (vLLM / OpenAI-compatible / transformers)
    distill.filter_traces(recipe.filter)       # verified, clean, deduplicated, decontaminated
    distill.train_sft(recipe.sft)              # full / LoRA / QLoRA student on the kept traces
    distill.train_rl(recipe.rl)                # GRPO on rule-based rewards
    distill.train_kd(recipe.kd)                # on-policy distillation from the teacher's log-probs
    distill.evaluate(recipe.eval)              # pass@1, pass@k, cons@k with 95% intervals
    distill.run(recipe)                        # every stage the recipe has, resumable

Heavy libraries (torch, vllm) load only when a stage runs.
"""
from __future__ import annotations

import importlib

from distill.config import (
    EvalConfig,
    FilterConfig,
    GenerateConfig,
    KDConfig,
    Recipe,
    RLConfig,
    SFTConfig,
    load_recipe,
    load_stage,
)
from distill.errors import DistillError
from distill.records import Problem, Trace, Verdict

__version__ = "0.1.0"

_LAZY = {
    "generate": ("distill.generation", "generate"),
    "filter_traces": ("distill.filter", "filter_traces"),
    "check": ("distill.filter.registry", "check"),
    "dataset_step": ("distill.filter.registry", "dataset_step"),
    "verify": ("distill.verify", "verify"),
    "train_sft": ("distill.sft", "train"),
    "train_rl": ("distill.rl.grpo", "train"),
    "train_kd": ("distill.kd.onpolicy", "train"),
    "evaluate": ("distill.eval", "evaluate"),
    "run": ("distill.pipeline", "run"),
    "resolve_model": ("distill.models", "resolve_model"),
}

__all__ = [
    "DistillError",
    "EvalConfig",
    "FilterConfig",
    "GenerateConfig",
    "KDConfig",
    "Problem",
    "RLConfig",
    "Recipe",
    "SFTConfig",
    "Trace",
    "Verdict",
    "check",
    "dataset_step",
    "evaluate",
    "filter_traces",
    "generate",
    "load_recipe",
    "load_stage",
    "resolve_model",
    "run",
    "train_kd",
    "train_rl",
    "train_sft",
    "verify",
]
assert set(__all__) >= set(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'distill' has no attribute {name!r}")
