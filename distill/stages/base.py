"""What a stage is to `distill run`: a name, when a recipe runs it, its key, its outputs, and a run.

The pipeline knows stages only through this protocol and the ordered list in distill.stages; each stage's
glue (which config section it reads, what it hands the next stage) is one module beside this one.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from distill import files
from distill.config import Recipe, config_hash
from distill.layout import RunLayout


@dataclass
class StageResult:
    """What a run of a stage leaves: its output paths by name (recorded in its manifest) and a small summary."""

    outputs: dict[str, str]
    summary: dict[str, Any] = field(default_factory=dict)


class Stage(Protocol):
    name: str

    def enabled(self, recipe: Recipe) -> bool:
        """Whether `distill run` runs this stage for `recipe`."""

    def key(self, recipe: Recipe, upstream: Mapping[str, str]) -> str:
        """What the stage's output depends on: its config, its inputs' digests, the keys of the stages before it
        (`upstream`, every earlier stage's key, enabled or not)."""

    def outputs(self, layout: RunLayout) -> list[Path]:
        """What the stage writes: moved to stale/ when the key changes (none: the stage judges staleness itself)."""

    def run(self, recipe: Recipe, layout: RunLayout, progress: bool) -> StageResult:
        """Run or resume; a rerun after a crash continues from the stage's own files."""


def key_of(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def input_digest(path: Path | str | None) -> str:
    """Content digest of an input file (or of the spec, when it is not a file)."""
    if path is None:
        return "none"
    path = Path(path)
    if not path.is_file():
        return "spec:" + str(path)
    return files.file_digest(path)


def small(stats: Any) -> dict[str, Any]:
    """A stage's stats, minus anything too big for a manifest."""
    if not isinstance(stats, dict):
        return {}
    return {k: v for k, v in stats.items() if len(json.dumps(v, default=str)) < 20_000}


def policy_outputs(result: Any) -> dict[str, str]:
    """What rl and kd record of their trainer's result: the folder the next stage and eval load, and its log."""
    return {"policy": str(result.policy), "output_dir": str(result.output_dir), "log_path": str(result.log_path),
            "plot_path": str(result.plot_path)}


def follows_sft(recipe: Recipe, section: str) -> bool:
    """True when the recipe's `section` (rl or kd) starts from its SFT student rather than a model of its own."""
    config = getattr(recipe, section)
    return config is not None and config.model == str(RunLayout.of(recipe).student)


def key_after_sft(recipe: Recipe, section: str, upstream: Mapping[str, str]) -> str:
    """rl's and kd's key: their config, where they start (sft's key, or their own model), their problems."""
    config = getattr(recipe, section)
    if config is None:
        return upstream["sft"]
    start = upstream["sft"] if follows_sft(recipe, section) else config.model
    return key_of(config_hash(config), start, input_digest(config.problems))


def own_model(recipe: Recipe) -> bool:
    """The recipe trains a model of its own (R1-Zero's rl.model, or kd.model) and no stage after sft starts
    from sft's student: then no traces feed anything, and generate, filter and sft do not run."""
    sections = [s for s in ("rl", "kd") if getattr(recipe, s) is not None]
    return bool(sections) and not any(follows_sft(recipe, s) for s in sections)
