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

import importlib
import importlib.metadata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from distill.errors import DistillError
from distill.records import Problem, Trace, Verdict

ENTRY_POINT_GROUP = "distill.checks"
DEFAULT_CHECK_TIMEOUT_S = 60.0

CheckFn = Callable[[Trace, "Problem | None"], Any]
StepFn = Callable[[list[Verdict]], Iterable[Verdict]]
F = TypeVar("F", bound=Callable[..., Any])

_CHECKS: dict[str, CheckFn] = {}
_STEPS: dict[str, StepFn] = {}


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    reason: str = ""
    score: Any = None


def _same(a: Callable, b: Callable) -> bool:
    """One function seen twice, e.g. a script imported again as __mp_main__ in a worker."""
    return getattr(a, "__qualname__", None) == getattr(b, "__qualname__", None) and \
        getattr(a, "__code__", None) is not None and a.__code__.co_filename == b.__code__.co_filename


def _register(table: dict[str, Callable], kind: str, name: str, timeout_s: float | None = None
              ) -> Callable[[F], F]:
    if not isinstance(name, str) or not name or ":" in name:
        raise DistillError(f"@{kind}({name!r}): the name must be a non-empty string without ':'")

    def decorator(fn: F) -> F:
        if name in table and not _same(table[name], fn):
            old = table[name]
            raise DistillError(f"@{kind}('{name}') is already registered by "
                               f"{old.__module__}.{old.__qualname__}; pick another name")
        table[name] = fn
        fn.__distill_kind__ = kind  # type: ignore[attr-defined]
        if timeout_s is not None:
            fn.__distill_timeout_s__ = float(timeout_s)  # type: ignore[attr-defined]
        return fn

    return decorator


def check(name: str, *, timeout_s: float = DEFAULT_CHECK_TIMEOUT_S) -> Callable[[F], F]:
    """Register `fn(trace, problem) -> CheckResult | (passed, reason[, score]) | bool` as a per-trace check.

    A call that runs longer than `timeout_s` has its worker killed and fails the trace with that reason."""
    if timeout_s <= 0:
        raise DistillError(f"@check({name!r}): timeout_s must be positive, got {timeout_s}")
    return _register(_CHECKS, "check", name, timeout_s)


def check_timeout_s(fn: Callable) -> float:
    return getattr(fn, "__distill_timeout_s__", DEFAULT_CHECK_TIMEOUT_S)


def dataset_step(name: str) -> Callable[[F], F]:
    """Register `fn(verdicts: list[Verdict]) -> list | iterator of Verdict` as a dataset-level step."""
    return _register(_STEPS, "dataset_step", name)


def get_check(name: str) -> CheckFn:
    return _lookup(name, _CHECKS, "check")


def get_step(name: str) -> StepFn:
    return _lookup(name, _STEPS, "dataset step")


def _lookup(name: str, table: dict[str, Callable], kind: str) -> Callable:
    if name in table:
        return table[name]
    if ":" in name:
        return _from_path(name, kind)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            try:
                target = entry.load()
            except Exception as exc:
                raise DistillError(f"{kind} '{name}': entry point {entry.value!r} of group "
                                   f"'{ENTRY_POINT_GROUP}' failed to load: {exc}") from exc
            if name in table:  # the module registered it on import
                return table[name]
            if callable(target):
                return target
            raise DistillError(f"{kind} '{name}': entry point {entry.value!r} is not callable and "
                               f"registered no {kind} of that name")
    known = ", ".join(sorted(table)) or "none"
    raise DistillError(f"unknown {kind} '{name}'. Registered: {known}. Use a registered name, "
                       f"'module:function', or an entry point in the '{ENTRY_POINT_GROUP}' group.")


def _from_path(spec: str, kind: str) -> Callable:
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise DistillError(f"{kind} '{spec}': cannot import module '{module_name}' ({exc})") from exc
    target: Any = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise DistillError(f"{kind} '{spec}': module '{module_name}' has no attribute '{attr}'")
    if not callable(target):
        raise DistillError(f"{kind} '{spec}': '{attr}' is not callable")
    return target


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
