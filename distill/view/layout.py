"""The files of a run directory the viewer shows, found on disk.

The stage manifests (RUN_DIR/stages/<stage>.json) name every output; the run layout's defaults
(distill.config.defaults: traces.jsonl, filter/, eval/) are the fallback, so a run directory that was moved or
copied, whose manifests hold the old absolute paths, still opens. Any part may be missing: a run stopped after
the filter has no eval. A folder of `distill kd --out-dir` alone opens too, for its disagreement record.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from distill.config import ConfigError, Recipe, defaults, validate_config
from distill.errors import DistillError
from distill.files import read_json_if_any
from distill.kd import disagreement
from distill.layout import RunLayout, eval_files
from distill.stages import NAMES

SKIPPED_DIRS = {"stale", "checkpoints", "cache"}  # old or intermediate outputs: their plots are not this run's


@dataclass
class RunFiles:
    run_dir: Path
    name: str
    recipe: dict[str, Any] = field(default_factory=dict)
    traces: Path | None = None        # every generated trace (before the filter)
    filter_dir: Path | None = None    # kept.jsonl, rejected.jsonl, stats.json
    problems: Path | None = None      # the training problems, with gold answers
    eval_dir: Path | None = None      # scores.json and one folder per model
    kd_dir: Path | None = None        # kd's output: disagreement.jsonl (distill.kd.disagreement)

    def disagreement_file(self) -> Path | None:
        path = self.kd_dir / disagreement.FILE if self.kd_dir is not None else None
        return path if path is not None and path.exists() else None

    def filter_file(self, name: str) -> Path | None:
        path = self.filter_dir / name if self.filter_dir is not None else None
        return path if path is not None and path.exists() else None

    def scores(self) -> dict[str, Any] | None:
        return read_json_if_any(self.eval_dir / "scores.json") if self.eval_dir is not None else None

    def eval_file(self, label: str, bench: str, kind: str) -> Path | None:
        """OUT/<model>/<bench>.<kind>.jsonl, kind one of traces, verdicts, results (see distill.eval.stage)."""
        if self.eval_dir is None:
            return None
        path = getattr(eval_files(self.eval_dir, label, bench), kind)
        return path if path.exists() else None

    def plots(self) -> list[str]:
        """Every PNG of the run, relative to the run directory, stage folders in run order."""
        found = [p.relative_to(self.run_dir) for p in self.run_dir.rglob("*.png")]
        return sorted(str(p) for p in found if not SKIPPED_DIRS & set(p.parts[:-1]))

    def manifests(self) -> list[dict[str, Any]]:
        stages = self.run_dir / "stages"
        found = [read_json_if_any(p) for p in sorted(stages.glob("*.json"))] if stages.is_dir() else []
        found = [m for m in found if isinstance(m, dict)]
        return sorted(found, key=lambda m: NAMES.index(m["stage"]) if m.get("stage") in NAMES else len(NAMES))


def find_layout(run_dir: Path) -> RunFiles:
    """The files of the run in `run_dir`; one clear sentence when it is not a run directory."""
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir():
        raise DistillError(f"{run_dir}: no such directory; give the run directory of `distill run` or "
                           "`distill demo` (the folder holding recipe.yaml and stages/)")
    recipe = _read_recipe(run_dir / "recipe.yaml")
    outputs = {stage: (read_json_if_any(RunLayout.manifest_of(run_dir, stage)) or {}).get("outputs", {})
               for stage in ("generate", "filter", "kd", "eval")}
    where = defaults(run_dir)
    traces = _first_file(outputs["generate"].get("traces"), where.traces)
    kept = _first_file(outputs["filter"].get("kept"), where.filter_dir / "kept.jsonl", run_dir / "kept.jsonl")
    scores = _first_file(outputs["eval"].get("scores"), where.eval_dir / "scores.json", run_dir / "scores.json")
    record = _first_file(*(Path(folder) / disagreement.FILE for folder in (
        outputs["kd"].get("output_dir"), _recipe_kd_dir(recipe), where.kd_dir, run_dir) if folder))
    section = recipe.get("filter") or {}
    problems = section.get("problems") or (recipe.get("generate") or {}).get("problems")
    layout = RunFiles(run_dir, recipe.get("name") or run_dir.name, recipe, traces=traces,
                       filter_dir=kept.parent if kept else None, eval_dir=scores.parent if scores else None,
                       problems=_first_file(problems, run_dir / str(problems)) if problems else None,
                       kd_dir=record.parent if record else None)
    if layout.traces is None and layout.filter_dir is None and layout.eval_dir is None and layout.kd_dir is None:
        raise DistillError(f"{run_dir}: no traces.jsonl, filter/kept.jsonl, eval/scores.json or kd/{disagreement.FILE} "
                           "here; give the run directory of `distill run` or `distill demo`, or a `distill kd` folder")
    return layout


def _recipe_kd_dir(recipe: dict[str, Any]) -> Path | None:
    """Where the run's layout puts kd (a `kd:` section's output_dir): a recipe that no longer validates has none."""
    if not recipe.get("kd"):
        return None
    try:
        return RunLayout.of(validate_config(Recipe, recipe, "recipe.yaml")).kd_dir
    except ConfigError:
        return None


def _read_recipe(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError, RecursionError):
        return {}  # the viewer shows the data; a broken recipe copy should not hide it
    return data if isinstance(data, dict) else {}


def _first_file(*candidates: str | Path | None) -> Path | None:
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    return None
