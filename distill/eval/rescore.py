"""`distill eval --rescore RUN`: judge an evaluation's stored samples again, without generating.

Reads RUN/scores.json and each model's OUT/<model>/<bench>.traces.jsonl, judges every sample with the
current verifier (the same pool, time bounds and sandbox the run used, from its <bench>.meta.json) into
RUN/rescore/<model>/<bench>.verdicts.jsonl, scores them, and writes RUN/rescore/scores.json with how many
verdicts changed against the stored ones. On an unchanged tree nothing changes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from distill.config import SandboxConfig
from distill.errors import DistillError
from distill.eval.judge import judge_pool, judge_traces
from distill.eval.models import slug
from distill.eval.scoring import score_benchmark
from distill.eval.table import scores_table
from distill.files import atomic_write_json, read_json
from distill.jsonl import read_jsonl
from distill.problems import load_problems

COMPARED = ("passed", "check", "detail", "extracted", "vote")


@dataclass
class RescoreResult:
    output_dir: Path
    scores_path: Path
    scores: dict[str, Any]
    changed: dict[str, dict[str, int]]  # label -> bench -> verdicts that differ from the stored ones


def rescore(run: str | Path, *, progress: bool = True, workers: int = 0, console=None) -> RescoreResult:
    run = Path(run)
    scores_path = run / "scores.json"
    if not scores_path.is_file():
        raise DistillError(f"eval --rescore {run}: no scores.json there; expected the output folder of a "
                           "`distill eval` run (its --out-dir, or RUN_DIR/eval of `distill run`)")
    stored = read_json(scores_path)
    k, seed = stored["k"], stored["sampling"]["seed"]
    out = run / "rescore"
    document = {**stored, "scores": {}, "deltas": {}, "rescored_from": str(scores_path)}
    changed: dict[str, dict[str, int]] = {}
    pass1: dict[str, dict[str, list[float]]] = {}
    with judge_pool(workers) as pool:
        for label in stored["models"]:
            for bench, info in stored["benchmarks"].items():
                folder = run / slug(label)
                traces = folder / f"{bench}.traces.jsonl"
                if not traces.is_file():
                    raise DistillError(f"eval --rescore {run}: {traces} is missing; the run's samples are needed "
                                       "to judge them again (rerun `distill eval` to generate them)")
                # the run's problems: the first `problems` of its file, as a --limit took them
                problems = load_problems(info["path"], limit=info["problems"], label=f"benchmark '{bench}'")
                timeout_s, sandbox = _verify_settings(folder / f"{bench}.meta.json", stored)
                target = out / slug(label)
                target.mkdir(parents=True, exist_ok=True)
                verdicts = target / f"{bench}.verdicts.jsonl"
                verdicts.unlink(missing_ok=True)  # a rescore judges everything afresh
                judge_traces(pool, traces, verdicts, problems, k, timeout_s, sandbox, progress)
                bench_scores, bench_pass1 = score_benchmark(verdicts, target / f"{bench}.results.jsonl", problems,
                                                            k, seed)
                document["scores"].setdefault(label, {})[bench] = bench_scores
                pass1.setdefault(label, {})[bench] = bench_pass1
                changed.setdefault(label, {})[bench] = _changed(folder / f"{bench}.verdicts.jsonl", verdicts)
    from distill.eval.stage import paired_deltas

    document["deltas"] = paired_deltas(list(stored["models"]), list(stored["benchmarks"]), pass1, seed)
    document["changed_verdicts"] = changed
    path = out / "scores.json"
    atomic_write_json(path, document)
    if progress:
        shown = console or Console(stderr=True)
        shown.print(scores_table(document))
        total = sum(n for per in changed.values() for n in per.values())
        shown.print(f"rescored {run}: {total} verdict(s) differ from the stored ones ({path})")
    return RescoreResult(out, path, document, changed)


def _verify_settings(meta_path: Path, stored: dict[str, Any]) -> tuple[float, SandboxConfig]:
    """The run's math timeout and sandbox: from the benchmark's meta.json, else scores.json's record."""
    if meta_path.is_file():
        timeout_s, sandbox = read_json(meta_path)["verify"]
        return float(timeout_s), SandboxConfig.model_validate(sandbox)
    verifier = (stored.get("reproduce") or {}).get("verifier") or {}
    return float(verifier.get("math_timeout_s", 5.0)), SandboxConfig.model_validate(verifier.get("sandbox", {}))


def _changed(stored_path: Path, new_path: Path) -> int:
    """Samples whose verdict (pass, check, detail, extracted answer, vote) differs, or that one side lacks."""
    def table(path: Path) -> dict[tuple[str, int], tuple]:
        if not path.is_file():
            return {}
        return {(r["problem_id"], r["sample"]): tuple(r.get(f) for f in COMPARED) for r in read_jsonl(path)}

    old, new = table(stored_path), table(new_path)
    return sum(old.get(key) != new.get(key) for key in old.keys() | new.keys())
