"""Where a run keeps each file: one RunLayout, computed once from the recipe, read by every part of distill.

A run directory holds

    recipe.yaml          the recipe as run (every default filled in)      summary.json, report.html
    stages/<stage>.json  each stage's manifest: key, status, outputs      stale/<time>-<stage>-<key>/
    problems.jsonl       the problems an import wrote (import recipes)    traces.jsonl, traces.stats.json
    filter/              kept.jsonl, rejected.jsonl, stats.json, plots/   dataset/ (hf/, train.parquet)
    student/             sft                                              kd/   on-policy distillation
    policy/              rl                                               eval/<model>/<bench>.<kind>.jsonl

`Recipe` fills every path a recipe leaves unset from `distill.config.defaults(run_dir)`; the stages, the pipeline, the CLI,
the cards, the report and the viewer then ask a `RunLayout` where things are instead of joining names.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from distill.config import Recipe, defaults, student_path

EVAL_KINDS = ("traces", "verdicts", "results", "meta")


def slug(text: str) -> str:
    """A folder-safe name: 'runs/x/student/merged' -> 'runs-x-student-merged'."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")
    return name[-80:] or "model"


@dataclass(frozen=True)
class EvalFiles:
    """One model on one benchmark: EVAL_DIR/<model slug>/<bench>.{traces,verdicts,results}.jsonl and .meta.json."""

    folder: Path
    traces: Path
    verdicts: Path
    results: Path
    meta: Path


def eval_files(eval_dir: Path, label: str, bench: str) -> EvalFiles:
    folder = Path(eval_dir) / slug(label)
    return EvalFiles(folder, folder / f"{bench}.traces.jsonl", folder / f"{bench}.verdicts.jsonl",
                     folder / f"{bench}.results.jsonl", folder / f"{bench}.meta.json")


def stats_path_for(traces: Path) -> Path:
    """traces.jsonl -> traces.stats.json, beside it."""
    traces = Path(traces)
    return traces.with_name(traces.stem + ".stats.json")


@dataclass(frozen=True)
class RunLayout:
    """Every path of one run, read from a recipe whose paths are filled in (`Recipe` does that)."""

    run_dir: Path
    problems: Path | None      # what generate answers (an import writes it)
    traces: Path
    filter_dir: Path
    dataset_dir: Path
    student_dir: Path
    student: Path              # what sft hands on: model/, merged/ or adapter/
    kd_dir: Path | None
    policy_dir: Path | None
    eval_dir: Path

    @classmethod
    def of(cls, recipe: Recipe) -> RunLayout:
        run = Path(recipe.run_dir)
        return cls(run_dir=run, problems=recipe.generate.problems, traces=Path(recipe.generate.output),
                   filter_dir=Path(recipe.filter.output_dir), dataset_dir=defaults(run).dataset_dir,
                   student_dir=Path(recipe.sft.output_dir), student=student_path(recipe.sft),
                   kd_dir=Path(recipe.kd.output_dir) if recipe.kd is not None else None,
                   policy_dir=Path(recipe.rl.output_dir) if recipe.rl is not None else None,
                   eval_dir=Path(recipe.eval.output_dir))

    # -------------------------------------------------------------------------------- the run's own files
    @property
    def recipe_file(self) -> Path:
        return self.run_dir / "recipe.yaml"

    @property
    def summary_file(self) -> Path:
        return self.run_dir / "summary.json"

    @property
    def report_file(self) -> Path:
        return self.run_dir / "report.html"

    @property
    def stale_dir(self) -> Path:
        return self.run_dir / "stale"

    def manifest(self, stage: str) -> Path:
        return self.manifest_of(self.run_dir, stage)

    @staticmethod
    def manifest_of(run_dir: Path, stage: str) -> Path:
        """RUN_DIR/stages/<stage>.json: the stage's key, status, outputs and summary."""
        return Path(run_dir) / "stages" / f"{stage}.json"

    # ------------------------------------------------------------------------------------- stage files
    @property
    def traces_stats(self) -> Path:
        return stats_path_for(self.traces)

    @property
    def kept(self) -> Path:
        return self.filter_dir / "kept.jsonl"

    @property
    def filter_stats(self) -> Path:
        return self.filter_dir / "stats.json"

    @property
    def scores(self) -> Path:
        return self.eval_dir / "scores.json"

    def eval_files(self, label: str, bench: str) -> EvalFiles:
        return eval_files(self.eval_dir, label, bench)

    def training_curve(self, stage: str) -> Path | None:
        """The per-step plot each trainer draws from its log.jsonl."""
        folder = {"sft": self.student_dir, "kd": self.kd_dir, "rl": self.policy_dir}[stage]
        name = {"sft": "training.png", "kd": "kd.png", "rl": "rewards.png"}[stage]
        return folder / name if folder is not None else None

    def describe(self) -> dict[str, Any]:
        """Every path, for `distill run --dry-run` and the docs: the fields, then the derived paths, read off the
        class so that a path added here is described without a second list."""
        derived = [name for name, member in vars(type(self)).items() if isinstance(member, property)]
        return {name: str(getattr(self, name)) for name in [f.name for f in fields(self)] + derived
                if getattr(self, name) is not None}
