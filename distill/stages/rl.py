"""rl: GRPO on the verifier's rewards, after sft (R1) or on a given model (R1-Zero)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from distill.config import Recipe
from distill.layout import RunLayout
from distill.stages import base
from distill.stages.base import StageResult, policy_outputs, small


def follows_sft(recipe: Recipe) -> bool:
    return base.follows_sft(recipe, "rl")


class RL:
    name = "rl"

    def enabled(self, recipe: Recipe) -> bool:
        return recipe.rl is not None

    def key(self, recipe: Recipe, upstream: Mapping[str, str]) -> str:
        return base.key_after_sft(recipe, "rl", upstream)

    def outputs(self, layout: RunLayout) -> list[Path]:
        return [layout.policy_dir] if layout.policy_dir is not None else []

    def run(self, recipe: Recipe, layout: RunLayout, progress: bool) -> StageResult:
        from distill.generation.engine import shutdown_llm
        from distill.rl import train

        # RL starts an engine of its own (its weights change every step): the teacher's engine, kept for eval,
        # would make two engines beside the trainer, and `distill demo --rl` was OOM-killed that way on 24 GiB.
        shutdown_llm()
        result = train(recipe.rl, progress=progress)
        return StageResult(policy_outputs(result), {"metrics": small(result.metrics)})
