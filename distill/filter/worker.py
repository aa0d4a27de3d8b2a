"""What a filter worker process does with one trace: quality checks, the verifier, custom checks.

Each group runs as its own phase of a `distill.pool` task with its own time budget, so a hung verifier or
custom check costs that trace one rejected check (the parent retries it with that phase skipped), never the
run. The filter's FilterSettings come bound to `run_task` (functools.partial), once per worker. Workers also
compute the MinHash signatures the dataset-level steps need.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distill.config import QualityConfig, SandboxConfig
from distill.filter.checks import quality_checks
from distill.filter.dedup import signature, trace_text
from distill.filter.registry import CheckFn, CheckResult, as_check_result, check_timeout_s
from distill.pool import phase
from distill.records import Problem, Trace, Verdict
from distill.verify import check_name, verify_budget_s, verify_inline

QUALITY_BUDGET_S = 30.0  # the built-in checks are linear-time; this only catches a pathological regex


@dataclass(frozen=True)
class FilterSettings:
    verify: bool
    math_timeout_s: float
    sandbox: SandboxConfig
    quality: QualityConfig
    custom: list[tuple[str, CheckFn]] = field(default_factory=list)


@dataclass(frozen=True)
class TraceTask:
    """Check one trace (JSON dicts: they pickle smaller than models). `skipped` maps a phase that hung or
    crashed on an earlier try to its reason."""
    trace: dict[str, Any]
    problem: dict[str, Any] | None
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MinhashTask:
    texts: list[str]
    num_perm: int
    shingle: int


def run_task(task: TraceTask | MinhashTask, settings: FilterSettings) -> Any:
    """Pool entry point: a verdict dict for a TraceTask, one signature array per text for a MinhashTask."""
    if isinstance(task, MinhashTask):
        return [signature(text, task.num_perm, task.shingle) for text in task.texts]
    return evaluate(Trace.model_validate(task.trace),
                    Problem.model_validate(task.problem) if task.problem is not None else None,
                    task.skipped, settings).to_json()


def evaluate(trace: Trace, problem: Problem | None, skipped: dict[str, str], settings: FilterSettings) -> Verdict:
    """Run every enabled check on one trace. `skipped` maps a phase that hung or crashed to its reason."""
    results: list[tuple[str, CheckResult]] = []
    if "quality" in skipped:
        results.append(("quality", CheckResult(False, skipped["quality"])))
    else:
        phase("quality", QUALITY_BUDGET_S)
        results += quality_checks(trace, problem, settings.quality)
    if settings.verify:
        results.append(_verify(trace, problem, skipped, settings))
    for name, fn in settings.custom:
        key = f"check:{name}"
        if key in skipped:
            results.append((name, CheckResult(False, skipped[key])))
            continue
        phase(key, check_timeout_s(fn))
        try:
            results.append((name, as_check_result(fn(trace, problem), name)))
        except Exception as exc:  # noqa: BLE001 - a buggy check rejects the trace with its error, visibly
            results.append((name, CheckResult(False, f"check raised {type(exc).__name__}: {exc}")))
    return make_verdict(trace, results)


def _verify(trace: Trace, problem: Problem | None, skipped: dict[str, str],
            settings: FilterSettings) -> tuple[str, CheckResult]:
    if problem is None:
        return "problem", CheckResult(False, f"no problem with id '{trace.problem_id}' in filter.problems")
    name = check_name(problem)
    if "verify" in skipped:
        return name, CheckResult(False, skipped["verify"], False)
    phase("verify", verify_budget_s(problem, settings.math_timeout_s, settings.sandbox))
    result = verify_inline(problem, trace.answer, math_timeout_s=settings.math_timeout_s, sandbox=settings.sandbox)
    if name == "none":
        return name, CheckResult(True, "", None)
    return name, CheckResult(result.passed, "" if result.passed else result.detail, result.passed)


def make_verdict(trace: Trace, results: list[tuple[str, CheckResult]]) -> Verdict:
    reasons = [{"check": name, "detail": r.reason or f"{name} failed"} for name, r in results if not r.passed]
    scores = {name: r.score for name, r in results if r.score is not None}
    data = {k: v for k, v in trace.to_json().items() if k not in ("kept", "reasons", "scores")}
    return Verdict(**data, kept=not reasons, reasons=reasons, scores=scores)


def trace_text_of(verdict: dict) -> str:
    return trace_text(verdict.get("reasoning", ""), verdict.get("answer", ""))
