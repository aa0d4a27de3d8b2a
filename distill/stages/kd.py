"""kd: on-policy distillation from the teacher's log-probs, after sft or on a given student."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from distill.config import Recipe
from distill.layout import RunLayout
from distill.stages import base
from distill.stages.base import StageResult, policy_outputs, small


def follows_sft(recipe: Recipe) -> bool:
    return base.follows_sft(recipe, "kd")


class KD:
    name = "kd"

    def enabled(self, recipe: Recipe) -> bool:
        return recipe.kd is not None

    def key(self, recipe: Recipe, upstream: Mapping[str, str]) -> str:
        return base.key_after_sft(recipe, "kd", upstream)

    def outputs(self, layout: RunLayout) -> list[Path]:
        return [layout.kd_dir] if layout.kd_dir is not None else []

    def run(self, recipe: Recipe, layout: RunLayout, progress: bool) -> StageResult:
        from distill.generation.engine import shutdown_llm
        from distill.kd import train

        shutdown_llm()  # the teacher's vLLM engine: kd loads the teacher with transformers beside the student
        result = train(recipe.kd, progress=progress)
        return StageResult(policy_outputs(result), {"metrics": small(result.metrics)})
