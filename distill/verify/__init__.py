"""Verifiers shared by the filter and evaluation: does this answer solve that problem?

    verify(problem, answer_text) -> VerifyResult(passed, check, detail, extracted)

Domains: math (math-verify against the gold answer), code (the problem's tests in the sandbox), mcq (the
chosen letter), text (no verifier: passed, check "none"). Every call ends within its bound: math runs in a
helper process that is killed after `math_timeout_s` (+1 s grace), code in the sandbox with its own
timeout. `verify_many` does the same for a stream of answers on all cores, in input order.
"""
from __future__ import annotations

import atexit
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from distill.config import SandboxConfig
from distill.pool import Failure, SupervisedPool, open_pool, phase
from distill.records import CodeTests, Problem
from distill.verify import code as code_verifier
from distill.verify import math as math_verifier
from distill.verify import mcq as mcq_verifier

# Time a guarded math check may run past its own timeout before its process is killed: math-verify
# stops itself at the timeout for anything written in Python, the kill is for code stuck in C.
MATH_GRACE_S = 1.0
# Sandbox start, cleanup and scheduling on a loaded machine, on top of the program's own timeout.
CODE_GRACE_S = 10.0
# What a verifying worker's forkserver imports once, so workers start warm (distill.pool). Callers add their
# own task modules: `preload=[*PRELOAD, "my.tasks"]`.
PRELOAD = ["distill.verify", "distill.verify._warm"]

__all__ = [
    "SandboxConfig",
    "VerifyResult",
    "extract_final_answer",
    "verify",
    "verify_budget_s",
    "verify_inline",
    "verify_many",
]


@dataclass(frozen=True)
class VerifyResult:
    passed: bool
    check: str  # math_verify | code_tests | mcq_letter | none
    detail: str
    extracted: str | None  # the answer the verifier looked at (boxed text, code, letter)
    guarantee: str = ""  # code: "structured" (expected values compared outside the sandbox) or "in-process"
    isolation: tuple[str, ...] = ()  # code: the sandbox layers the program ran under


def check_name(problem: Problem) -> str:
    return {"math": math_verifier.CHECK, "code": code_verifier.CHECK, "mcq": mcq_verifier.CHECK}.get(
        problem.domain, "none")


def verify_budget_s(problem: Problem, math_timeout_s: float, sandbox: SandboxConfig | None) -> float:
    """Wall time after which a verification counts as hung and its process may be killed."""
    if problem.domain == "code":
        runs = len(problem.tests.stdio) if isinstance(problem.tests, CodeTests) and problem.tests.stdio else 1
        return (sandbox or SandboxConfig()).timeout_s * runs + CODE_GRACE_S
    return math_timeout_s + MATH_GRACE_S


def verify_inline(problem: Problem, answer_text: str, *, math_timeout_s: float = 5.0,
                  sandbox: SandboxConfig | None = None) -> VerifyResult:
    """`verify` in this process, for callers that already bound its time (a distill.pool task)."""
    name = check_name(problem)
    if problem.domain == "math":
        if problem.answer is None:
            return VerifyResult(False, name, "problem has no gold answer", None)
        passed, detail, extracted = math_verifier.check_math(problem.answer, answer_text, math_timeout_s)
        return VerifyResult(passed, name, detail, extracted)
    if problem.domain == "code":
        verdict = code_verifier.check_code(problem, answer_text, sandbox or SandboxConfig())
        return VerifyResult(verdict.passed, name, verdict.detail, verdict.code, verdict.guarantee, verdict.isolation)
    if problem.domain == "mcq":
        passed, detail, extracted = mcq_verifier.check_mcq(problem, answer_text)
        return VerifyResult(passed, name, detail, extracted)
    return VerifyResult(True, name, "no verifier for text problems", None)


def verify(problem: Problem, answer_text: str, *, math_timeout_s: float = 5.0,
           sandbox: SandboxConfig | None = None) -> VerifyResult:
    """Check one answer; math goes through a helper process so a pathological expression cannot hang us."""
    if problem.domain != "math":
        return verify_inline(problem, answer_text, math_timeout_s=math_timeout_s, sandbox=sandbox)
    return _guard().run(GuardTask("verify", problem, answer_text, math_timeout_s))


def extract_final_answer(problem: Problem, answer_text: str, *, math_timeout_s: float = 5.0) -> str | None:
    """The final answer in a canonical form, so equivalent answers vote together (majority vote, cons@k).

    math: sympy-canonical ('\\frac{1}{2}', '0.5' and '1/2' all give '1/2'); mcq: the letter; code: the code
    block; text: the stripped answer."""
    if problem.domain == "math":
        return _guard().run(GuardTask("extract", problem, answer_text, math_timeout_s))
    if problem.domain == "mcq":
        return mcq_verifier.extract_letter(problem, answer_text)
    if problem.domain == "code":
        return code_verifier.extract_code(answer_text)
    return answer_text.strip() or None


@dataclass(frozen=True)
class GuardTask:
    """A math check or answer extraction for the guard process."""
    kind: Literal["verify", "extract"]
    problem: Problem
    answer_text: str
    timeout_s: float


def _guarded_task(task: GuardTask) -> VerifyResult | str | None:
    phase(task.kind, task.timeout_s + MATH_GRACE_S)
    if task.kind == "extract":
        return math_verifier.normalized_answer(task.answer_text, task.timeout_s)
    return verify_inline(task.problem, task.answer_text, math_timeout_s=task.timeout_s)


def _guard_failure(task: GuardTask, failure: Failure) -> VerifyResult | None:
    if task.kind == "extract":
        return None
    if failure.killed:
        return VerifyResult(False, check_name(task.problem), f"no verdict within {task.timeout_s:g} s "
                            f"(+{MATH_GRACE_S:g} s grace): verifier process killed", None)
    return VerifyResult(False, check_name(task.problem), f"verifier error: {failure.reason.splitlines()[0]}", None)


class _MathGuard:
    """One long-lived helper process for math checks, replaced whenever it has to be killed."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pool: SupervisedPool | None = None

    def run(self, task: GuardTask):
        with self.lock:
            if self.pool is None:
                self.pool = SupervisedPool(_guarded_task, 1, preload=PRELOAD)
            return next(self.pool.imap([task], _guard_failure))

    def close(self) -> None:
        with self.lock:
            if self.pool is not None:
                self.pool.close()
                self.pool = None


_GUARD = _MathGuard()
atexit.register(_GUARD.close)


def _guard() -> _MathGuard:
    return _GUARD


@dataclass(frozen=True)
class ManyTask:
    """One (problem, answer) of `verify_many`."""
    problem: Problem
    answer_text: str
    timeout_s: float
    sandbox: SandboxConfig | None


def _many_task(task: ManyTask) -> VerifyResult:
    phase("verify", verify_budget_s(task.problem, task.timeout_s, task.sandbox))
    return verify_inline(task.problem, task.answer_text, math_timeout_s=task.timeout_s, sandbox=task.sandbox)


def _many_failure(task: ManyTask, failure: Failure) -> VerifyResult:
    if failure.killed:
        budget = verify_budget_s(task.problem, task.timeout_s, task.sandbox)
        return VerifyResult(False, check_name(task.problem), f"no verdict within {budget:g} s: verifier process "
                            "killed", None)
    return VerifyResult(False, check_name(task.problem), f"verifier error: {failure.reason.splitlines()[0]}", None)


def verify_many(items: Iterable[tuple[Problem, str]], *, math_timeout_s: float = 5.0,
                sandbox: SandboxConfig | None = None, workers: int = 0) -> Iterator[VerifyResult]:
    """verify() over (problem, answer_text) pairs on `workers` processes (0 = all cores), in input order."""
    tasks = (ManyTask(problem, text, math_timeout_s, sandbox) for problem, text in items)
    with open_pool(_many_task, workers=workers, preload=PRELOAD) as pool:
        yield from pool.imap(tasks, _many_failure)
