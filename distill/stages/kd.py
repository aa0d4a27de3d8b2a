"""kd: on-policy distillation from the teacher's log-probs, after sft or on a given student."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from distill.config import Recipe, config_hash
from distill.layout import RunLayout
from distill.stages.base import StageResult, input_digest, key_of, policy_outputs, small


def follows_sft(recipe: Recipe) -> bool:
    """True when the recipe's on-policy distillation starts from its SFT student."""
    return recipe.kd is not None and recipe.kd.model == str(RunLayout.of(recipe).student)


class KD:
    name = "kd"

    def enabled(self, recipe: Recipe) -> bool:
        return recipe.kd is not None

    def key(self, recipe: Recipe, upstream: Mapping[str, str]) -> str:
        if recipe.kd is None:
            return upstream["sft"]
        start = upstream["sft"] if follows_sft(recipe) else recipe.kd.model
        return key_of(config_hash(recipe.kd), start, input_digest(recipe.kd.problems))

    def outputs(self, layout: RunLayout) -> list[Path]:
        return [layout.kd_dir] if layout.kd_dir is not None else []

    def run(self, recipe: Recipe, layout: RunLayout, progress: bool) -> StageResult:
        from distill.generation.engine import shutdown_llm
        from distill.kd import train

        shutdown_llm()  # the teacher's vLLM engine: kd loads the teacher with transformers beside the student
        result = train(recipe.kd, progress=progress)
        return StageResult(policy_outputs(result), {"metrics": small(result.metrics)})
