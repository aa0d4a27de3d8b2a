"""eval: every model of the run on every benchmark, pass@1 with intervals and paired differences."""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from distill.config import Recipe, config_hash
from distill.errors import DistillError
from distill.layout import RunLayout
from distill.stages.base import StageResult, input_digest, key_of
from distill.stages.kd import follows_sft as kd_follows_sft
from distill.stages.rl import follows_sft as rl_follows_sft


class Eval:
    name = "eval"

    def enabled(self, recipe: Recipe) -> bool:
        return bool(recipe.eval.benchmarks)

    def key(self, recipe: Recipe, upstream: Mapping[str, str]) -> str:
        # A run without kd keeps its eval key (and so its finished evaluation); with kd, eval follows it too.
        before = upstream["rl"] if recipe.kd is None else [upstream["rl"], upstream["kd"]]
        return key_of(config_hash(recipe.eval), before, [input_digest(b.path) for b in recipe.eval.benchmarks])

    def outputs(self, layout: RunLayout) -> list[Path]:
        # None to move aside: each model's samples carry their own meta (weights fingerprint, generation hash,
        # problems digest) and eval moves a model's files aside itself when they are stale, so a recipe that
        # adds a model (`demo --rl` adds the policy) reuses the others' samples instead of drawing them again.
        return []

    def run(self, recipe: Recipe, layout: RunLayout, progress: bool) -> StageResult:
        from distill.eval import evaluate

        result = evaluate(recipe.eval, progress=progress, aliases=model_aliases(recipe))
        return StageResult({"scores": str(result.scores_path)}, {"scores_path": str(result.scores_path)})


def _manifest_output(layout: RunLayout, stage: str, name: str) -> str | None:
    path = layout.manifest(stage)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text()).get("outputs", {}).get(name)
    except ValueError as exc:
        raise DistillError(f"{path}: not valid JSON ({exc}); delete it to rerun the stage") from None


def _sft_base(recipe: Recipe) -> str:
    """The model SFT started from, as eval must serve it: in the recipe's chat template when it sets one
    (a base student has none of its own, and the student is scored in that template)."""
    if recipe.sft.chat_template is None:
        return recipe.sft.model
    from distill.chat_templates import templated_model
    from distill.models import resolve_model

    return templated_model(resolve_model(recipe.sft.model), recipe.sft.chat_template, recipe.sft.chat_template_tokens)


def model_aliases(recipe: Recipe) -> dict[str, Any]:
    """`base` is the model the run started from; `student` what sft made of it, `kd` and `policy` what the
    later stages made (each the folder its manifest names, else where the layout puts it)."""
    layout = RunLayout.of(recipe)
    student = _manifest_output(layout, "sft", "student") or str(layout.student_dir / "merged")
    distilled = {}
    if recipe.kd is not None:
        distilled = {"kd": _manifest_output(layout, "kd", "policy") or str(layout.kd_dir / "merged")}
    if recipe.kd is not None and not kd_follows_sft(recipe) and recipe.rl is None:
        return {"base": recipe.kd.model, **distilled}  # kd on a given student: that student, and what kd made of it
    if recipe.rl is None:
        return {"base": _sft_base(recipe), "student": student, **distilled}
    policy = _manifest_output(layout, "rl", "policy") or str(layout.policy_dir / "merged")
    if not rl_follows_sft(recipe):  # R1-Zero: the model RL started from, and what RL made of it
        return {"base": recipe.rl.model, "policy": policy}
    return {"base": _sft_base(recipe), "student": student, "policy": policy, **distilled}
