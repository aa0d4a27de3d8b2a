"""rl: GRPO on the verifier's rewards, after sft (R1) or on a given model (R1-Zero)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from distill.config import Recipe, config_hash
from distill.layout import RunLayout
from distill.stages.base import StageResult, input_digest, key_of, policy_outputs, small


def follows_sft(recipe: Recipe) -> bool:
    """True when the recipe's RL starts from its SFT student; False for R1-Zero (RL on a given model)."""
    return recipe.rl is not None and recipe.rl.model == str(RunLayout.of(recipe).student)


class RL:
    name = "rl"

    def enabled(self, recipe: Recipe) -> bool:
        return recipe.rl is not None

    def key(self, recipe: Recipe, upstream: Mapping[str, str]) -> str:
        if recipe.rl is None:
            return upstream["sft"]
        start = upstream["sft"] if follows_sft(recipe) else recipe.rl.model
        return key_of(config_hash(recipe.rl), start, input_digest(recipe.rl.problems))

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
