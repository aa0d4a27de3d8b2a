"""`distill run RECIPE`: every stage of distill.stages.PIPELINE in one run directory, resumable end to end.

Every stage has a key: its config hash, the digests of the input files it reads, and the keys of the stages
before it (so new traces mean a new filter, a new student and a new evaluation). When a stage starts it
writes RUN_DIR/stages/<stage>.json with status "running" and its key; when it ends, status "done" with
its outputs and a summary. On a rerun:
  - done with the same key: skipped;
  - running with the same key (the process died): the stage runs again and resumes from its own files
    (each stage appends by key or restarts from a checkpoint);
  - any other key: the stage's old outputs are moved to RUN_DIR/stale/<time>-<stage>-<old key>/ and it starts
    fresh (docs/architecture.md states the policy).
Then the dataset card, the model card and the HTML report are rebuilt from what is on disk.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from distill import cards, files, run_report
from distill.config import Recipe, config_hash, dump_yaml
from distill.errors import DistillError
from distill.eval.table import scores_table
from distill.files import atomic_write_json, atomic_write_text
from distill.layout import RunLayout
from distill.run_report import RunSummary, StageReport  # the run's result type; the report renders it
from distill.stages import NAMES, PIPELINE, Stage


# ----------------------------------------------------------------------------------------------- keys
def stage_keys(recipe: Recipe) -> dict[str, str]:
    """Each stage's key, chained: a change upstream changes every key after it."""
    keys: dict[str, str] = {}
    for stage in PIPELINE:
        keys[stage.name] = stage.key(recipe, keys)
    return keys


# ------------------------------------------------------------------------------------------ manifests
def read_manifest(run_dir: Path, stage: str) -> dict[str, Any] | None:
    path = RunLayout.manifest_of(run_dir, stage)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise DistillError(f"{path}: not valid JSON ({exc}); delete it to rerun the stage") from None


def retire(layout: RunLayout, stage: Stage, old_key: str) -> Path | None:
    """Move a stage's outputs from another configuration to RUN_DIR/stale/<time>-<stage>-<old key>/."""
    return files.move_aside(stage.outputs(layout), layout.stale_dir, f"{stage.name}-{old_key}")


# -------------------------------------------------------------------------------------------------- run
def run(recipe: Recipe, *, progress: bool = True, stages: list[str] | None = None, console=None) -> RunSummary:
    """Run (or resume) every stage of `recipe` whose output is missing or stale, then cards and report."""
    console = console or Console(stderr=True)
    started = time.monotonic()
    layout = RunLayout.of(recipe)
    try:
        layout.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(layout.recipe_file, dump_yaml(recipe))
    except OSError as exc:
        raise DistillError(f"run_dir {layout.run_dir}: cannot write there ({exc.strerror}); pick a folder you can "
                           "write to (run_dir=... or --run-dir)") from None
    from distill.context_window import check_context_window
    check_context_window(recipe.sft.model, recipe.sft.max_length)  # before any stage loads weights
    keys = stage_keys(recipe)
    wanted = stages or list(NAMES)
    unknown = sorted(set(wanted) - set(NAMES))
    if unknown:
        raise DistillError(f"unknown stage(s) {unknown}; the stages are {list(NAMES)}")
    reports: list[StageReport] = []
    for stage in PIPELINE:
        if stage.name not in wanted:
            continue
        if not stage.enabled(recipe):
            reports.append(StageReport(stage.name, "not configured", keys[stage.name], 0.0))
            continue
        reports.append(_run_stage(recipe, layout, stage, keys[stage.name], progress, console))
    return finish(recipe, reports, started, progress=progress, console=console)


def _run_stage(recipe: Recipe, layout: RunLayout, stage: Stage, key: str, progress: bool, console) -> StageReport:
    """One staleness policy for every stage (docs/architecture.md): done with this key -> skipped; running with
    this key (the process died) -> run again, resuming from the stage's own files; any other key, or outputs
    with no manifest (a stage command run by hand, an older distill) -> the outputs move to stale/ first."""
    name = stage.name
    old = read_manifest(layout.run_dir, name)
    action = next_action(old, key)
    if action == "skip":
        if progress:
            console.print(f"[dim]{name}: done earlier for this configuration (key {key}), skipped[/]")
        return StageReport(name, "skipped", key, old.get("seconds", 0.0), old.get("outputs", {}),
                           old.get("summary", {}))
    resumed = action == "resume"
    if not resumed:
        moved = retire(layout, stage, old.get("key", "unknown") if old is not None else "unknown")
        if progress and moved is not None:
            why = "configuration changed" if old is not None else "outputs without a stage manifest"
            console.print(f"[yellow]{name}: {why}; old outputs moved to {moved}[/]")
    if progress:
        console.rule(f"[bold]{name}[/]" + (" (resuming)" if resumed else ""))
    begin = time.monotonic()
    manifest = {"stage": name, "key": key, "status": "running", "started": _now(),
                "config_hash": config_hash(getattr(recipe, name))}
    atomic_write_json(layout.manifest(name), manifest)
    result = stage.run(recipe, layout, progress)
    seconds = round(time.monotonic() - begin, 2)
    manifest.update(status="done", finished=_now(), seconds=seconds, outputs=result.outputs, summary=result.summary)
    atomic_write_json(layout.manifest(name), manifest)
    return StageReport(name, "resumed" if resumed else "ran", key, seconds, result.outputs, result.summary)


def next_action(manifest: dict[str, Any] | None, key: str) -> str:
    """What a run does with a stage, from its manifest: skip (done, same key), resume (running, same key),
    or run (fresh, after moving aside any outputs of another key)."""
    if manifest is not None and manifest.get("key") == key:
        return "skip" if manifest.get("status") == "done" else "resume"
    return "run"


def preview(recipe: Recipe) -> list[dict[str, Any]]:
    """What `distill run` would do with each stage, reading only the manifests: `distill run --dry-run`."""
    layout, keys = RunLayout.of(recipe), stage_keys(recipe)
    rows = []
    for stage in PIPELINE:
        old = read_manifest(layout.run_dir, stage.name) if stage.enabled(recipe) else None
        action = next_action(old, keys[stage.name]) if stage.enabled(recipe) else "not configured"
        stale = action == "run" and any(p.exists() for p in stage.outputs(layout))
        rows.append({"stage": stage.name, "action": "move aside, run" if stale else action, "key": keys[stage.name],
                     "recorded_key": (old or {}).get("key"),
                     "outputs": [str(p) for p in stage.outputs(layout)] if stage.enabled(recipe) else []})
    return rows


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# ----------------------------------------------------------------------------------------------- finish
def finish(recipe: Recipe, reports: list[StageReport], started: float, *, progress: bool = True,
           console=None) -> RunSummary:
    """Cards, report and the closing summary, from the files the stages left on disk."""
    layout = RunLayout.of(recipe)
    summary = RunSummary(layout.run_dir, reports)
    by_name = {r.name: r for r in reports}
    flt = by_name.get("filter")
    if flt is not None and flt.outputs:
        stats = files.read_json_if_any(layout.filter_stats) or {}
        summary.funnel = stats.get("funnel")
        summary.dataset_card = cards.write_dataset_card(
            layout.filter_dir, recipe.generate, name=f"{recipe.name}-traces",
            eval_sets=[str(p) for p in recipe.filter.decontaminate.against], run_dir=layout.run_dir).path
    sft = by_name.get("sft")
    ev = by_name.get("eval")
    if ev is not None and ev.outputs:
        summary.scores = files.read_json_if_any(Path(ev.outputs["scores"]))
    if sft is not None and sft.outputs:
        summary.training = sft.summary.get("metrics")
        summary.model_card = cards.write_model_card(
            layout.student_dir, recipe.sft, scores=summary.scores, training=summary.training,
            plot_path=layout.training_curve("sft"), dataset_card=summary.dataset_card, recipe=recipe,
            kept=(flt.summary.get("kept") if flt is not None else None), run_dir=layout.run_dir)
    rl = by_name.get("rl")
    if rl is not None and rl.outputs:
        summary.model_card = cards.write_policy_card(
            layout.policy_dir, recipe.rl, training=rl.summary.get("metrics"), scores=summary.scores,
            log_path=Path(rl.outputs["log_path"]), recipe=recipe, student_card=summary.model_card)
    summary.wall_s = round(time.monotonic() - started, 1)
    summary.report = run_report.write_report(recipe, summary)
    atomic_write_json(layout.summary_file, summary_json(summary))
    if progress:
        print_summary(summary, console)
    return summary


def summary_json(summary: RunSummary) -> dict[str, Any]:
    return {
        "run_dir": str(summary.run_dir), "wall_s": summary.wall_s,
        "stages": [{"name": s.name, "status": s.status, "key": s.key, "seconds": s.seconds, "outputs": s.outputs}
                   for s in summary.stages],
        "funnel": summary.funnel, "training": summary.training,
        "scores": summary.scores.get("scores") if summary.scores else None,
        "deltas": summary.scores.get("deltas") if summary.scores else None,
        "dataset_card": str(summary.dataset_card) if summary.dataset_card else None,
        "model_card": str(summary.model_card) if summary.model_card else None,
        "report": str(summary.report) if summary.report else None,
    }


def describe_training(training: dict[str, Any]) -> str:
    """SFT's result in a sentence (every field is in the student's result.json)."""
    t = training
    parts = [f"{t.get('method', '?')} {t.get('precision', '')}".strip() + f" on {t.get('model', '?')}"]
    if t.get("steps") is not None:
        parts.append(f"{t['steps']} steps")
    if t.get("tokens") and t.get("tokens_per_s"):
        parts.append(f"{t['tokens']:,} tokens at {t['tokens_per_s']:.0f} tok/s")
    if t.get("train_loss") is not None:
        parts.append(f"train loss {t['train_loss']:.3f}")
    if t.get("eval_loss") is not None:
        parts.append(f"eval loss {t['eval_loss']:.3f}")
    if t.get("peak_rss_gib"):
        parts.append(f"peak {t['peak_rss_gib']:.1f} GiB")
    return "training: " + ", ".join(parts)


def print_summary(summary: RunSummary, console) -> None:
    stages = Table(title=f"run {summary.run_dir} ({summary.wall_s:.0f} s this invocation)")
    for column in ("stage", "status", "seconds", "key"):
        stages.add_column(column)
    for s in summary.stages:
        stages.add_row(s.name, s.status, f"{s.seconds:.1f}", s.key)
    console.print(stages)
    if summary.funnel:
        funnel = Table(title="filter funnel (each reject counted at its first failed check)")
        for column in ("step", "removed", "remaining"):
            funnel.add_column(column)
        for row in summary.funnel:
            funnel.add_row(row["stage"], str(row.get("removed", "")), str(row["remaining"]))
        console.print(funnel)
    if summary.training:
        console.print(describe_training(summary.training), highlight=False)
    if summary.scores:
        console.print(scores_table(summary.scores))
    for label, path in (("dataset card", summary.dataset_card), ("model card", summary.model_card),
                        ("report", summary.report)):
        if path is not None:
            console.print(f"{label}: {path}")
