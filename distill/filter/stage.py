"""`filter_traces`: Trace JSONL in; kept.jsonl, rejected.jsonl, stats.json, decontamination.json out.

1. Per trace, on all cores (`distill.pool`, this machine's or a Ray cluster's): quality checks, the verifier, custom
   checks -> OUTPUT/checked.jsonl, one Verdict per trace in input order. This is the expensive pass and it
   resumes: a rerun after a crash skips every trace already in checked.jsonl (started over only when the
   per-trace settings changed).
2. Dataset steps over the traces still kept, streaming: exact and near dedup, decontamination, custom
   steps (these get a list), per-problem selection. They only mark traces as removed.
3. One more pass over checked.jsonl writes kept.jsonl and rejected.jsonl (each reject with every failing
   check) and the statistics, each file atomically, so the outputs are whole or absent.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from distill.config import FilterConfig
from distill.errors import DistillError
from distill.files import (
    InputError,
    atomic_open,
    atomic_write_json,
    file_digest,
    input_file,
    output_dir,
    output_file,
    read_json_if_any,
    stat_fingerprint,
)
from distill.filter import checks as quality
from distill.filter import registry, worker
from distill.filter.decontam import Decontaminator
from distill.filter.dedup import Deduplicator
from distill.filter.select import Candidate, choose
from distill.jsonl import JsonlReader, JsonlWriter, count_lines
from distill.pool import Failure, Pool, Retry, open_pool
from distill.problems import load_problems
from distill.records import Problem, Trace, Verdict, read_traces, trace_key
from distill.ui import progress_bar
from distill.verify import MATH_GRACE_S, PRELOAD
from distill.verify.code import isolation_report

CHECKED, KEPT, REJECTED = "checked.jsonl", "kept.jsonl", "rejected.jsonl"
STATS, DECONTAM, STATE = "stats.json", "decontamination.json", "checked.state.json"
VERIFIERS = ["problem", "math_verify", "code_tests", "mcq_letter"]
STEPS = ["dedup_exact", "dedup_near", "decontaminate"]
MINHASH_BATCH = 32  # signatures per pool task: one round trip per batch, not per trace


@dataclass
class FilterResult:
    output_dir: Path
    kept: int
    rejected: int
    stats: dict = field(default_factory=dict)


def filter_traces(config: FilterConfig, *, progress: bool = True) -> FilterResult:
    """Run the rejection-sampling filter described in the module docstring."""
    started = time.monotonic()
    source, out = _paths(config)
    problems = load_problems(config.problems, label="filter.problems", allow_empty=True) \
        if config.problems is not None else {}
    if config.problems is not None and not problems and not config.allow_empty:
        raise DistillError(f"filter.problems: {config.problems} holds no problems; nothing to verify against "
                           "(set filter.allow_empty=true to filter anyway)")
    total = _scan_traces(source, problems, config)  # all input read and checked before anything is written
    custom = [(name, registry.get_check(name)) for name in config.checks]
    steps = [(name, registry.get_step(name)) for name in config.steps]
    settings = worker.FilterSettings(verify=config.verify, math_timeout_s=config.math_timeout_s,
                               sandbox=config.sandbox, quality=config.quality, custom=custom)
    decontam = Decontaminator(config.decontaminate) if config.decontaminate.against else None
    timings: dict[str, float] = {}
    # Refuses weak isolation before any work starts; recorded in stats.json.
    sandbox = isolation_report(config.sandbox, problems.values()) if config.verify else None
    out.mkdir(parents=True, exist_ok=True)
    with open_pool(partial(worker.run_task, settings=settings), workers=config.workers, executor=config.executor,
                   ray=config.ray, preload=[*PRELOAD, "distill.filter.worker"]) as pool:
        workers = pool.size  # processes verifying: this machine's, or the Ray cluster's
        mark = time.monotonic()
        counts = _check_traces(config, source, out, problems, pool, progress, total)
        timings["per_trace_checks"], mark = time.monotonic() - mark, time.monotonic()
        removals, modified, step_counts = _dataset_steps(config, out, problems, steps, decontam, pool, progress)
        timings["dataset_steps"], mark = time.monotonic() - mark, time.monotonic()
        restarts, worker_cpu = pool.restarts, pool.cpu_seconds
    stats = _write_outputs(out, problems, removals, modified, order=_funnel_order(custom, steps))
    timings["outputs"] = time.monotonic() - mark
    stats.update(input=str(source), workers=workers, worker_restarts=restarts, steps=step_counts,
                 elapsed_s=round(time.monotonic() - started, 2),
                 timings_s={k: round(v, 2) for k, v in timings.items()}, worker_cpu_s=round(worker_cpu, 2),
                 **counts, **({"sandbox": sandbox} if sandbox else {}))
    atomic_write_json(out / STATS, stats)
    if decontam is not None:
        atomic_write_json(out / DECONTAM, decontam.report(step_counts.get("decontaminate", 0)))
    return FilterResult(out, stats["kept"], stats["rejected"], stats)


# ---------------------------------------------------------------------------------------------- setup
def _paths(config: FilterConfig) -> tuple[Path, Path]:
    if config.input is None:
        raise DistillError("filter.input is not set: give the Trace JSONL to filter (in a recipe it defaults "
                           "to RUN_DIR/traces.jsonl)")
    try:
        input_file(config.input, "the Trace JSONL to filter")
    except InputError as exc:
        raise DistillError(f"filter.input: {exc}") from None
    if config.output_dir is None:
        raise DistillError("filter.output_dir is not set (in a recipe it defaults to RUN_DIR/filter)")
    if config.verify and config.problems is None:
        raise DistillError("filter.problems is not set: verification needs the Problem JSONL with the gold "
                           "answers and tests (or set filter.verify=false to run the quality checks only)")
    out = output_dir(config.output_dir, "the filter's outputs")
    for name in (CHECKED, KEPT, REJECTED, STATS, STATE):
        output_file(out / name, "a filter output")
    return Path(config.input), out


def _scan_traces(source: Path, problems: dict[str, Problem], config: FilterConfig) -> int:
    """Read every trace once before any output is touched: a bad line, an empty input, or traces that answer
    none of the given problems (the wrong problems file) stop here and leave earlier outputs byte-identical."""
    total, answered, first_id = 0, 0, None
    for _, trace in read_traces(source, "give the traces as --input and the problems as --problems"):
        total += 1
        answered += trace.problem_id in problems
        first_id = first_id or trace.problem_id
    if total == 0 and not config.allow_empty:
        raise DistillError(f"filter.input: {source} holds no traces; the earlier outputs in {config.output_dir} "
                           "were left as they were (pass --allow-empty to write empty outputs)")
    if total and config.verify and not answered and not config.allow_empty:
        some = ", ".join(f"'{i}'" for i in list(problems)[:3])
        raise DistillError(f"filter: none of the {total} traces in {source} answers a problem in "
                           f"{config.problems} (traces name problem_id '{first_id}', the problems have ids "
                           f"{some}, ...): is it the problems file the traces were generated from?")
    return total


def _per_trace_hash(config: FilterConfig) -> str:
    """What the per-trace verdicts depend on (settings and the gold answers, not the dataset steps)."""
    part = {k: getattr(config, k) for k in ("verify", "math_timeout_s", "sandbox", "quality", "checks")}
    blob = json.dumps({k: v.model_dump() if hasattr(v, "model_dump") else v for k, v in part.items()},
                      sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode())
    if config.verify and config.problems is not None:
        problems = Path(config.problems)
        if problems.is_file():
            with open(problems, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        else:  # a save_to_disk folder by its files, a hub id by its name (its revision is cached)
            digest.update((stat_fingerprint(problems) if problems.is_dir() else str(problems)).encode())
    return digest.hexdigest()[:12]


# ------------------------------------------------------------------------------------ 1. per trace
def _check_traces(config: FilterConfig, source: Path, out: Path, problems: dict[str, Problem],
                  pool: Pool, progress: bool, total: int) -> dict[str, int]:
    checked = out / CHECKED
    # The input's digest too: traces rewritten under the same keys must be checked again, not resumed.
    state = {"per_trace_hash": _per_trace_hash(config), "input_digest": file_digest(source)}
    if checked.exists() and read_json_if_any(out / STATE) != state:  # a garbled state file counts as other
        checked.unlink()  # made with other per-trace settings: its verdicts do not apply
    atomic_write_json(out / STATE, state)
    counts = {"total": 0, "resumed": 0, "duplicate_keys": 0}
    queued: set[str] = set()
    with JsonlWriter(checked, key=lambda r: trace_key(r["problem_id"], r["sample"])) as writer, \
            progress_bar("filter: checking traces", total, "traces", enabled=progress) as advance:

        def tasks() -> Iterator[worker.TraceTask]:
            for trace in JsonlReader(source, Trace):
                key = trace.key
                if key in queued or writer.has(key):
                    counts["resumed" if writer.has(key) and key not in queued else "duplicate_keys"] += 1
                    queued.add(key)
                    advance(1)
                    continue
                queued.add(key)
                problem = problems.get(trace.problem_id)
                yield worker.TraceTask(trace.to_json(), problem.to_json() if problem else None)

        for verdict in pool.imap(tasks(), lambda task, failure: _on_failure(task, failure, config)):
            writer.write(verdict)
            advance(1)
    counts["total"] = count_lines(checked)
    return counts


def _on_failure(task: worker.TraceTask | worker.MinhashTask, failure: Failure, config: FilterConfig) -> Any:
    """A phase hung (worker killed) or raised: retry the trace with that phase marked failed."""
    if isinstance(task, worker.MinhashTask):
        return None
    if failure.killed and failure.phase == "verify":
        reason = f"no verdict within the time bound (math_timeout_s={config.math_timeout_s:g} + " \
                 f"{MATH_GRACE_S:g} s grace, or the sandbox timeout): verifier process killed"
    elif failure.killed:
        reason = f"{failure.phase} overran its time budget or crashed: worker killed"
    else:
        reason = f"error: {failure.reason.splitlines()[0]}"
    if failure.phase in ("quality", "verify") or failure.phase.startswith("check:"):
        return Retry(worker.TraceTask(task.trace, task.problem, {**task.skipped, failure.phase: reason}))
    trace = Trace.model_validate(task.trace)
    return worker.make_verdict(trace, [("worker", registry.CheckResult(False, reason))]).to_json()


# ------------------------------------------------------------------------------- 2. dataset steps
def _dataset_steps(config: FilterConfig, out: Path, problems: dict[str, Problem], steps: list,
                   decontam: Decontaminator | None, pool: Pool, progress: bool,
                   ) -> tuple[dict[str, dict], dict[str, Verdict], dict[str, int]]:
    """Decide which kept traces the dataset-level steps remove: key -> {'check', 'detail'}."""
    removals: dict[str, dict] = {}
    counts: Counter = Counter()
    dedup = Deduplicator(config.dedup) if (config.dedup.exact or config.dedup.near) else None
    want_sigs = (dedup is not None and config.dedup.near) or \
        (config.select.policy == "diverse" and config.select.k is not None)
    survivors: dict[str, list[Candidate]] = defaultdict(list)
    signatures: dict[str, np.ndarray] = dedup.signatures if dedup is not None else {}
    kept_total = sum(1 for v in JsonlReader(out / CHECKED) if v["kept"])
    with progress_bar("filter: dataset steps", kept_total, "traces", enabled=progress) as advance:
        for verdict, sig in _kept_with_signatures(out, config, pool, want_sigs):
            key = trace_key(verdict["problem_id"], verdict["sample"])
            advance(1)
            removal = dedup.seen(key, worker.trace_text_of(verdict), sig) if dedup is not None else None
            if removal is None and decontam is not None:
                hit = decontam.match(verdict["problem_id"], _problem_text(verdict, problems))
                if hit is not None:
                    detail = (f"shares the {config.decontaminate.ngram}-gram '{hit['ngram']}' with "
                              f"{hit['benchmark_id']} in {hit['benchmark']}")
                    removal = ("decontaminate", detail)
            if removal is not None:
                removals[key] = {"check": removal[0], "detail": removal[1]}
                counts[removal[0]] += 1
                continue
            if sig is not None:
                signatures.setdefault(key, sig)
            survivors[verdict["problem_id"]].append(
                Candidate(key, verdict["sample"], verdict.get("completion_tokens") or len(verdict["completion"])))
    modified: dict[str, Verdict] = {}
    if steps:
        survivors, modified = _custom_steps(out, steps, survivors, removals, counts)
    for problem_id, candidates in survivors.items():
        keep = {c.key for c in choose(problem_id, candidates, config.select, signatures)}
        for c in candidates:
            if c.key not in keep:
                removals[c.key] = {"check": "select", "detail": f"policy '{config.select.policy}' kept "
                                                                f"{len(keep)} of {len(candidates)} verified traces"}
                counts["select"] += 1
    return removals, modified, dict(counts)


def _kept_with_signatures(out: Path, config: FilterConfig, pool: Pool,
                          want: bool) -> Iterator[tuple[dict, np.ndarray | None]]:
    """Kept verdicts in file order with their MinHash signatures, computed on the pool."""
    kept = (v for v in JsonlReader(out / CHECKED) if v["kept"])
    if not want:
        for verdict in kept:
            yield verdict, None
        return
    pending: deque[list[dict]] = deque()

    def tasks() -> Iterator[worker.MinhashTask]:
        for batch in _batches(kept, MINHASH_BATCH):
            pending.append(batch)
            yield worker.MinhashTask([worker.trace_text_of(v) for v in batch], config.dedup.num_perm,
                                     config.dedup.shingle)

    for sigs in pool.imap(tasks(), lambda task, failure: _on_failure(task, failure, config)):
        batch = pending.popleft()
        yield from zip(batch, sigs if sigs is not None else [None] * len(batch))


def _batches(items: Iterator[dict], size: int) -> Iterator[list[dict]]:
    batch: list[dict] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _problem_text(verdict: dict, problems: dict[str, Problem]) -> str:
    problem = problems.get(verdict["problem_id"])
    return problem.problem if problem is not None else quality.prompt_text(Trace.model_validate(verdict))


def _custom_steps(out: Path, steps: list, survivors: dict[str, list[Candidate]], removals: dict[str, dict],
                  counts: Counter) -> tuple[dict[str, list[Candidate]], dict[str, Verdict]]:
    """Run user steps on the surviving verdicts (held in memory: that is the step API)."""
    alive = {c.key for group in survivors.values() for c in group}
    current = [Verdict.model_validate(v) for v in JsonlReader(out / CHECKED)
               if trace_key(v["problem_id"], v["sample"]) in alive]
    for name, step in steps:
        try:
            returned = list(step(list(current)))
        except Exception as exc:
            raise DistillError(f"dataset step '{name}' raised {type(exc).__name__}: {exc}") from exc
        if not all(isinstance(v, Verdict) for v in returned):
            raise DistillError(f"dataset step '{name}' must return Verdicts")
        by_key = {v.key: v for v in returned}
        for verdict in current:
            result = by_key.get(verdict.key)
            if result is None or not result.kept:
                detail = "; ".join(r.get("detail", "") for r in result.reasons) if result is not None else ""
                removals[verdict.key] = {"check": name, "detail": detail or f"removed by dataset step '{name}'"}
                counts[name] += 1
        current = [v for v in returned if v.kept and v.key in {c.key for c in current}]
    modified = {v.key: v for v in current}
    groups: dict[str, list[Candidate]] = defaultdict(list)
    for v in current:
        groups[v.problem_id].append(Candidate(v.key, v.sample, v.completion_tokens or len(v.completion)))
    return groups, modified


# ---------------------------------------------------------------------------------------- 3. outputs
def _funnel_order(custom: list, steps: list) -> list[str]:
    names = [name for name, _, _ in quality.QUALITY_CHECKS] + ["quality"] + VERIFIERS
    return names + [n for n, _ in custom] + ["worker"] + STEPS + [n for n, _ in steps] + ["select"]


def _write_outputs(out: Path, problems: dict[str, Problem], removals: dict[str, dict],
                   modified: dict[str, Verdict], order: list[str]) -> dict:
    rank = {name: i for i, name in enumerate(order)}
    failed: dict[str, Counter] = defaultdict(Counter)  # domain -> check -> every failure
    first: dict[str, Counter] = defaultdict(Counter)   # domain -> check -> rejects it was the first reason of
    totals: dict[str, Counter] = defaultdict(Counter)
    with atomic_open(out / KEPT) as kept_file, atomic_open(out / REJECTED) as rejected_file:
        for data in JsonlReader(out / CHECKED):
            key = trace_key(data["problem_id"], data["sample"])
            verdict = modified[key].to_json() if key in modified else data
            if verdict["kept"] and key in removals:
                verdict = {**verdict, "kept": False, "reasons": verdict.get("reasons", []) + [removals[key]]}
            problem = problems.get(verdict["problem_id"])
            domain = problem.domain if problem is not None else "unknown"
            totals[domain]["total"] += 1
            if verdict["kept"]:
                totals[domain]["kept"] += 1
                kept_file.write(json.dumps(verdict, ensure_ascii=False) + "\n")
                continue
            rejected_file.write(json.dumps(verdict, ensure_ascii=False) + "\n")
            names = [r["check"] for r in verdict["reasons"]]
            for name in dict.fromkeys(names):
                failed[domain][name] += 1
            first[domain][min(names, key=lambda n: rank.get(n, len(rank)))] += 1
    return _stats(order, totals, failed, first)


def _stats(order: list[str], totals: dict, failed: dict, first: dict) -> dict:
    def funnel(domain_first: Counter, total: int) -> list[dict]:
        rows, remaining = [{"stage": "input", "remaining": total}], total
        names = [n for n in order if domain_first.get(n)] + sorted(set(domain_first) - set(order))
        for name in names:
            remaining -= domain_first[name]
            rows.append({"stage": name, "removed": domain_first[name], "remaining": remaining})
        return rows

    all_failed, all_first, all_totals = Counter(), Counter(), Counter()
    for domain, counts in totals.items():
        all_failed.update(failed[domain])
        all_first.update(first[domain])
        all_totals.update(counts)
    per_domain = {d: {"total": t["total"], "kept": t["kept"], "rejected": t["total"] - t["kept"],
                      "failed": dict(failed[d]), "funnel": funnel(first[d], t["total"])}
                  for d, t in sorted(totals.items())}
    return {"kept": all_totals["kept"], "rejected": all_totals["total"] - all_totals["kept"],
            "failed": dict(all_failed), "funnel": funnel(all_first, all_totals["total"]),
            "per_domain": per_domain}

