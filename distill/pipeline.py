"""`distill run RECIPE`: generate -> filter -> sft -> eval in one run directory, resumable end to end.

Every stage has a key: its config hash, the digests of the input files it reads, and the key of the stage
before it (so new traces mean a new filter, a new student and a new evaluation). When a stage starts it
writes RUN_DIR/stages/<stage>.json with status "running" and its key; when it ends, status "done" with
its outputs and a summary. On a rerun:
  - done with the same key: skipped;
  - running with the same key (the process died): the stage runs again and resumes from its own files
    (each stage appends by key or restarts from a checkpoint);
  - any other key: the stage's old outputs are moved to RUN_DIR/stale/<time>/ and it starts fresh.
Then the dataset card, the model card and the HTML report are rebuilt from what is on disk.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from distill import cards, files, run_report
from distill.config import STAGES, Recipe, config_hash, dump_yaml, kd_follows_sft, rl_follows_sft
from distill.errors import DistillError
from distill.eval.table import scores_table
from distill.files import atomic_write_json, atomic_write_text
from distill.run_report import RunSummary, StageReport  # the run's result type; the report renders it

BEFORE_RL = ("generate", "filter", "sft")  # skipped by R1-Zero recipes (RL on a given model)


# ----------------------------------------------------------------------------------------------- keys
def input_digest(path: Path | str | None) -> str:
    """Content digest of an input file (or of the spec, when it is not a file)."""
    if path is None:
        return "none"
    path = Path(path)
    if not path.is_file():
        return "spec:" + str(path)
    return files.file_digest(path)


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def stage_keys(recipe: Recipe) -> dict[str, str]:
    """Each stage's key, chained: a change upstream changes every key after it."""
    gen, flt, sft, ev = recipe.generate, recipe.filter, recipe.sft, recipe.eval
    keys: dict[str, str] = {}
    # `limit` and `shard` are unhashed in GenerateConfig (they pick work, not settings) but change the output.
    keys["generate"] = _key(config_hash(gen), input_digest(gen.problems), gen.limit, gen.shard)
    if recipe.import_traces is not None:  # the traces come from a public set instead of the teacher
        keys["generate"] = _key("import", config_hash(recipe.import_traces))
    # Problems the import writes are covered by the generate key (the file appears only once it has run).
    imported = recipe.import_traces is not None and flt.problems == gen.problems
    keys["filter"] = _key(config_hash(flt), keys["generate"], "imported" if imported else input_digest(flt.problems),
                          [input_digest(p) for p in flt.decontaminate.against])
    keys["sft"] = _key(config_hash(sft), keys["filter"])
    keys["rl"] = keys["sft"]
    if recipe.rl is not None:
        upstream = keys["sft"] if rl_follows_sft(recipe) else recipe.rl.model
        keys["rl"] = _key(config_hash(recipe.rl), upstream, input_digest(recipe.rl.problems))
    if recipe.kd is not None:
        upstream = keys["sft"] if kd_follows_sft(recipe) else recipe.kd.model
        keys["kd"] = _key(config_hash(recipe.kd), upstream, input_digest(recipe.kd.problems))
    else:
        keys["kd"] = keys["sft"]
    # A run without kd keeps its eval key (and so its finished evaluation); with kd, eval follows it too.
    before_eval = keys["rl"] if recipe.kd is None else [keys["rl"], keys["kd"]]
    keys["eval"] = _key(config_hash(ev), before_eval, [input_digest(b.path) for b in ev.benchmarks])
    return keys


# ------------------------------------------------------------------------------------------ manifests
def manifest_path(run_dir: Path, stage: str) -> Path:
    return Path(run_dir) / "stages" / f"{stage}.json"


def read_manifest(run_dir: Path, stage: str) -> dict[str, Any] | None:
    path = manifest_path(run_dir, stage)
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise DistillError(f"{path}: not valid JSON ({exc}); delete it to rerun the stage") from None


def stage_outputs(recipe: Recipe, stage: str) -> list[Path]:
    """What a stage writes, to move aside when it must start over."""
    if stage == "generate":
        out = Path(recipe.generate.output)
        return [out] + sorted(p for p in out.parent.glob(f"{out.stem}.*") if p != out)
    if stage == "filter":
        return [Path(recipe.filter.output_dir), Path(recipe.run_dir) / "dataset"]
    if stage == "sft":
        return [Path(recipe.sft.output_dir)]
    if stage == "rl":
        return [Path(recipe.rl.output_dir)] if recipe.rl is not None else []
    if stage == "kd":
        return [Path(recipe.kd.output_dir)] if recipe.kd is not None else []
    return [Path(recipe.eval.output_dir)]


def retire(recipe: Recipe, stage: str, old_key: str) -> Path | None:
    """Move a stage's outputs from another configuration to RUN_DIR/stale/<time>-<stage>-<old key>/."""
    target = Path(recipe.run_dir) / "stale" / f"{time.strftime('%Y%m%d-%H%M%S')}-{stage}-{old_key}"
    moved = False
    for path in stage_outputs(recipe, stage):
        if path.exists():
            target.mkdir(parents=True, exist_ok=True)
            shutil.move(str(path), str(target / path.name))
            moved = True
    return target if moved else None


# ----------------------------------------------------------------------------------------------- stages
def _run_generate(recipe: Recipe, progress: bool) -> tuple[dict, dict]:
    from distill.generation import generate

    if recipe.import_traces is not None:
        from distill.importers import import_recipe_traces
        return import_recipe_traces(recipe)
    if recipe.generate.problems is None:
        raise DistillError(f"recipe '{recipe.name}': generate.problems is not set (a Problem JSONL file)")
    result = generate(recipe.generate, progress=progress)
    return ({"traces": str(result.output), "stats": str(result.stats_path)},
            {"written": result.written, "skipped": result.skipped, **_small(result.stats)})


def _run_filter(recipe: Recipe, progress: bool) -> tuple[dict, dict]:
    from distill.export import export_dataset
    from distill.filter import filter_traces

    result = filter_traces(recipe.filter, progress=progress)
    kept = Path(result.output_dir) / "kept.jsonl"
    exported = export_dataset(kept, Path(recipe.run_dir) / "dataset")
    return ({"filter_dir": str(result.output_dir), "kept": str(kept), "dataset": str(exported.dataset_dir),
             "parquet": str(exported.parquet_path)},
            {"kept": result.kept, "rejected": result.rejected, "funnel": result.stats.get("funnel", [])})


def engine_stays_for_training(on_gpu: bool) -> bool:
    """Whether the teacher's engine may stay alive while a training stage runs.

    On a GPU the engine keeps vllm.gpu_memory_utilization of the card (0.9 by default) for its weights and KV
    cache, so the student would not fit beside it; eval starts its own engine after training. On a CPU the
    engine's share is the KV cache (vllm.kv_cache_gib of RAM), and keeping it saves eval a restart when eval
    serves the teacher's model (the demo's base), so it stays."""
    return not on_gpu


def release_engine_for_training() -> None:
    """Stop the teacher's engine before a training stage where it would hold the device the trainer needs."""
    import torch

    from distill.generation.engine import shutdown_llm

    if not engine_stays_for_training(torch.cuda.is_available()):
        shutdown_llm()


def _run_sft(recipe: Recipe, progress: bool) -> tuple[dict, dict]:
    from distill.sft import train

    release_engine_for_training()
    # train() returns the device memory its trainer held (sft.train.free_device_memory) before eval's engine starts.
    result = train(recipe.sft, progress=progress, eval_prompts=recipe.eval.prompts)
    student = result.merged_dir or result.adapter_dir or result.output_dir
    outputs = {"student": str(student), "output_dir": str(result.output_dir)}
    for name in ("adapter_dir", "merged_dir", "log_path", "plot_path"):
        value = getattr(result, name, None)
        if value is not None:
            outputs[name] = str(value)
    return outputs, {"metrics": _small(result.metrics)}


def _run_eval(recipe: Recipe, progress: bool) -> tuple[dict, dict]:
    from distill.eval import evaluate

    result = evaluate(recipe.eval, progress=progress, aliases=model_aliases(recipe))
    return {"scores": str(result.scores_path)}, {"scores_path": str(result.scores_path)}


def _run_rl(recipe: Recipe, progress: bool) -> tuple[dict, dict]:
    from distill.generation.engine import shutdown_llm
    from distill.rl import train

    # RL starts an engine of its own (its weights change every step): the teacher's engine, kept for eval,
    # would make two engines beside the trainer, and `distill demo --rl` was OOM-killed that way on 24 GiB.
    shutdown_llm()
    result = train(recipe.rl, progress=progress)
    outputs = {"policy": str(result.policy), "output_dir": str(result.output_dir), "log_path": str(result.log_path),
               "plot_path": str(result.plot_path)}
    return outputs, {"metrics": _small(result.metrics)}


def _run_kd(recipe: Recipe, progress: bool) -> tuple[dict, dict]:
    from distill.generation.engine import shutdown_llm
    from distill.kd import train

    shutdown_llm()  # the teacher's vLLM engine: kd loads the teacher with transformers beside the student
    result = train(recipe.kd, progress=progress)
    outputs = {"policy": str(result.policy), "output_dir": str(result.output_dir), "log_path": str(result.log_path),
               "plot_path": str(result.plot_path)}
    return outputs, {"metrics": _small(result.metrics)}


RUNNERS: dict[str, Callable[[Recipe, bool], tuple[dict, dict]]] = {
    "generate": _run_generate, "filter": _run_filter, "sft": _run_sft, "kd": _run_kd, "rl": _run_rl,
    "eval": _run_eval}


def _sft_base(recipe: Recipe) -> str:
    """The model SFT started from, as eval must serve it: in the recipe's chat template when it sets one
    (a base student has none of its own, and the student is scored in that template)."""
    if recipe.sft.chat_template is None:
        return recipe.sft.model
    from distill.chat_templates import templated_model
    from distill.models import resolve_model

    return templated_model(resolve_model(recipe.sft.model), recipe.sft.chat_template, recipe.sft.chat_template_tokens)


def model_aliases(recipe: Recipe) -> dict[str, str]:
    """`base` is the model SFT started from; `student` what it produced (merged when there is one)."""
    manifest = read_manifest(recipe.run_dir, "sft") or {}
    student = manifest.get("outputs", {}).get("student")
    if student is None:
        student = str(Path(recipe.sft.output_dir) / "merged")
    distilled = {}
    if recipe.kd is not None:
        kd = read_manifest(recipe.run_dir, "kd") or {}
        distilled = {"kd": kd.get("outputs", {}).get("policy") or str(Path(recipe.kd.output_dir) / "merged")}
    if recipe.kd is not None and not kd_follows_sft(recipe) and recipe.rl is None:
        return {"base": recipe.kd.model, **distilled}  # kd on a given student: that student, and what kd made of it
    if recipe.rl is None:
        return {"base": _sft_base(recipe), "student": student, **distilled}
    rl = read_manifest(recipe.run_dir, "rl") or {}
    policy = rl.get("outputs", {}).get("policy") or str(Path(recipe.rl.output_dir) / "merged")
    if not rl_follows_sft(recipe):  # R1-Zero: the model RL started from, and what RL made of it
        return {"base": recipe.rl.model, "policy": policy}
    return {"base": _sft_base(recipe), "student": student, "policy": policy, **distilled}


def _small(stats: Any) -> dict[str, Any]:
    """A stage's stats, minus anything too big for a manifest."""
    if not isinstance(stats, dict):
        return {}
    return {k: v for k, v in stats.items() if len(json.dumps(v, default=str)) < 20_000}


# -------------------------------------------------------------------------------------------------- run
def configured(recipe: Recipe, stage: str) -> bool:
    """Whether `distill run` runs `stage` for this recipe. A recipe that trains a given model (R1-Zero's rl.model,
    or kd.model set to a student of its own) skips generate, filter and sft: no traces feed it."""
    if stage == "eval":
        return bool(recipe.eval.benchmarks)
    if stage in ("rl", "kd"):
        return getattr(recipe, stage) is not None
    own_rl = recipe.rl is not None and not rl_follows_sft(recipe)
    own_kd = recipe.kd is not None and not kd_follows_sft(recipe)
    feeds_sft = (recipe.rl is not None and rl_follows_sft(recipe)) or (recipe.kd is not None and kd_follows_sft(recipe))
    return not ((own_rl or own_kd) and not feeds_sft)


def run(recipe: Recipe, *, progress: bool = True, stages: list[str] | None = None, console=None) -> RunSummary:
    """Run (or resume) every stage of `recipe` whose output is missing or stale, then cards and report."""
    console = console or Console(stderr=True)
    started = time.monotonic()
    run_dir = Path(recipe.run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "recipe.yaml", _recipe_yaml(recipe))
    except OSError as exc:
        raise DistillError(f"run_dir {run_dir}: cannot write there ({exc.strerror}); pick a folder you can write "
                           "to (run_dir=... or --run-dir)") from None
    from distill.context_window import check_context_window
    check_context_window(recipe.sft.model, recipe.sft.max_length)  # before any stage loads weights
    keys = stage_keys(recipe)
    wanted = stages or list(STAGES)
    unknown = sorted(set(wanted) - set(STAGES))
    if unknown:
        raise DistillError(f"unknown stage(s) {unknown}; the stages are {list(STAGES)}")
    reports: list[StageReport] = []
    for stage in STAGES:
        if stage not in wanted:
            continue
        if not configured(recipe, stage):
            reports.append(StageReport(stage, "not configured", keys[stage], 0.0))
            continue
        reports.append(_run_stage(recipe, stage, keys[stage], progress, console))
    summary = finish(recipe, reports, started, progress=progress, console=console)
    return summary


def _run_stage(recipe: Recipe, stage: str, key: str, progress: bool, console) -> StageReport:
    run_dir = Path(recipe.run_dir)
    old = read_manifest(run_dir, stage)
    if old is not None and old.get("key") == key and old.get("status") == "done":
        if progress:
            console.print(f"[dim]{stage}: done earlier for this configuration (key {key}), skipped[/]")
        return StageReport(stage, "skipped", key, old.get("seconds", 0.0), old.get("outputs", {}),
                           old.get("summary", {}))
    resumed = old is not None and old.get("key") == key
    # Eval keeps its folder: each model's samples carry their own meta (weights fingerprint, generation hash,
    # problems digest) and are moved aside there when stale, so a recipe that adds a model (`demo --rl` adds
    # the policy) reuses the base's and the student's samples instead of drawing them again.
    if old is not None and not resumed and stage != "eval":
        moved = retire(recipe, stage, old.get("key", "unknown"))
        if progress and moved is not None:
            console.print(f"[yellow]{stage}: configuration changed; old outputs moved to {moved}[/]")
    elif old is None:
        # No manifest but outputs on disk: written by the stage commands run by hand, or by an older
        # distill. Their keys are unknown, so resuming into them could mix configurations.
        leftovers = [p for p in stage_outputs(recipe, stage) if p.exists()]
        if leftovers:
            moved = retire(recipe, stage, "unknown")
            if progress:
                console.print(f"[yellow]{stage}: outputs without a stage manifest moved to {moved}[/]")
    if progress:
        console.rule(f"[bold]{stage}[/]" + (" (resuming)" if resumed else ""))
    begin = time.monotonic()
    manifest = {"stage": stage, "key": key, "status": "running", "started": _now(),
                "config_hash": config_hash(getattr(recipe, stage))}
    atomic_write_json(manifest_path(run_dir, stage), manifest)
    outputs, summary = RUNNERS[stage](recipe, progress)
    seconds = round(time.monotonic() - begin, 2)
    manifest.update(status="done", finished=_now(), seconds=seconds, outputs=outputs, summary=summary)
    atomic_write_json(manifest_path(run_dir, stage), manifest)
    return StageReport(stage, "resumed" if resumed else "ran", key, seconds, outputs, summary)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _recipe_yaml(recipe: Recipe) -> str:
    return dump_yaml(recipe)


# ----------------------------------------------------------------------------------------------- finish
def finish(recipe: Recipe, reports: list[StageReport], started: float, *, progress: bool = True,
           console=None) -> RunSummary:
    """Cards, report and the closing summary, from the files the stages left on disk."""
    run_dir = Path(recipe.run_dir)
    summary = RunSummary(run_dir, reports)
    by_name = {r.name: r for r in reports}
    flt = by_name.get("filter")
    if flt is not None and flt.outputs:
        stats = files.read_json_if_any(Path(recipe.filter.output_dir) / "stats.json") or {}
        summary.funnel = stats.get("funnel")
        summary.dataset_card = cards.write_dataset_card(
            Path(recipe.filter.output_dir), recipe.generate, name=f"{recipe.name}-traces",
            eval_sets=[str(p) for p in recipe.filter.decontaminate.against], run_dir=run_dir).path
    sft = by_name.get("sft")
    ev = by_name.get("eval")
    if ev is not None and ev.outputs:
        summary.scores = files.read_json_if_any(Path(ev.outputs["scores"]))
    if sft is not None and sft.outputs:
        summary.training = sft.summary.get("metrics")
        log_path = sft.outputs.get("log_path")
        summary.model_card = cards.write_model_card(
            Path(recipe.sft.output_dir), recipe.sft, scores=summary.scores, training=summary.training,
            log_path=Path(log_path) if log_path else None, dataset_card=summary.dataset_card, recipe=recipe,
            kept=(flt.summary.get("kept") if flt is not None else None), run_dir=run_dir)
    rl = by_name.get("rl")
    if rl is not None and rl.outputs:
        summary.model_card = cards.write_policy_card(
            Path(recipe.rl.output_dir), recipe.rl, training=rl.summary.get("metrics"), scores=summary.scores,
            log_path=Path(rl.outputs["log_path"]), recipe=recipe, student_card=summary.model_card)
    summary.wall_s = round(time.monotonic() - started, 1)
    summary.report = run_report.write_report(recipe, summary)
    atomic_write_json(run_dir / "summary.json", summary_json(summary))
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
