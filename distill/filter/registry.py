"""Custom filters: per-trace checks and dataset-level steps, found by name.

    from distill.filter import check, dataset_step, CheckResult

    @check("no_apology")
    def no_apology(trace, problem):
        return CheckResult(passed="I apologize" not in trace.answer, reason="apologizes", score=None)

    @dataset_step("cap_per_teacher")
    def cap_per_teacher(verdicts):
        ...return the verdicts to keep (or an iterator); one with kept=False is rejected with its reasons

A recipe names them in `filter.checks` / `filter.steps` by registered name, as `module:function`, or by
the name of an entry point in the `distill.checks` group of an installed package (one group for both
kinds; the entry point may point at the function or at a module whose import registers it).

Checks run in worker processes, so a check must be importable there: defined in a module, or in a script
whose top level is safe to import (`if __name__ == "__main__":` around the run). Steps run in the main
process on the list of traces still kept.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from distill.checks import CheckResult
from distill.errors import DistillError
from distill.plugins import F, Registry, timeout_of
from distill.records import Problem, Trace, Verdict

DEFAULT_CHECK_TIMEOUT_S = 60.0

CheckFn = Callable[[Trace, "Problem | None"], Any]
StepFn = Callable[[list[Verdict]], Iterable[Verdict]]

CHECKS = Registry("check")
STEPS = Registry("dataset_step")


def check(name: str, *, timeout_s: float = DEFAULT_CHECK_TIMEOUT_S) -> Callable[[F], F]:
    """Register `fn(trace, problem) -> CheckResult | (passed, reason[, score]) | bool` as a per-trace check.

    A call that runs longer than `timeout_s` has its worker killed and fails the trace with that reason."""
    if timeout_s <= 0:
        raise DistillError(f"@check({name!r}): timeout_s must be positive, got {timeout_s}")
    return CHECKS.register(name, timeout_s)


def check_timeout_s(fn: Callable) -> float:
    return timeout_of(fn, DEFAULT_CHECK_TIMEOUT_S)


def dataset_step(name: str) -> Callable[[F], F]:
    """Register `fn(verdicts: list[Verdict]) -> list | iterator of Verdict` as a dataset-level step."""
    return STEPS.register(name)


def get_check(name: str) -> CheckFn:
    return CHECKS.lookup(name)


def get_step(name: str) -> StepFn:
    return STEPS.lookup(name)


def as_check_result(value: Any, name: str) -> CheckResult:
    """Accept CheckResult, (passed, reason[, score]) or bool from a check; anything else is a bug in it."""
    if isinstance(value, CheckResult):
        return value
    if isinstance(value, bool):
        return CheckResult(value, "" if value else f"{name} failed", value)
    if isinstance(value, tuple) and 1 <= len(value) <= 3 and isinstance(value[0], bool):
        passed = value[0]
        reason = str(value[1]) if len(value) > 1 else ("" if passed else f"{name} failed")
        return CheckResult(passed, reason, value[2] if len(value) > 2 else None)
    raise DistillError(f"check '{name}' returned {type(value).__name__} {value!r:.80}; expected CheckResult, "
                       "(passed, reason[, score]) or bool")
