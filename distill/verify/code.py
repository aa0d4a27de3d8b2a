"""Code: the answer's Python code block, run in the sandbox against the problem's tests.

Structured tests (stdin/stdout, calls; HumanEval asserts converted to calls) are compared here, outside
the sandbox: the `structured` guarantee. `check(candidate)` asserts that cannot be converted run in the
sandbox in a process of their own, which the program cannot read, calling the program's function
through a proxy that passes only plain literals: the `proxied` guarantee. A bare assertion program with
no entry point runs with the solution in one interpreter and reports its own completion: the
`in-process` guarantee, which a program written to fool the verifier can forge. Every verdict names the
guarantee it had and the isolation layers applied.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from distill.config import SandboxConfig
from distill.records import CodeTests, Problem
from distill.verify.code_tests import call_matches, from_humaneval, preamble, stdout_matches
from distill.verify.sandbox import SandboxResult, check_isolation, run_sandboxed

CHECK = "code_tests"
STRUCTURED, PROXIED, IN_PROCESS = "structured", "proxied", "in-process"

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


@dataclass(frozen=True)
class CodeVerdict:
    passed: bool
    detail: str
    code: str | None
    guarantee: str = ""  # structured | in-process ("" when nothing ran)
    isolation: tuple[str, ...] = ()


def extract_code(answer_text: str) -> str | None:
    """The last fenced block tagged python/py (or untagged); None when the answer has no code block."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(answer_text)]
    python = [body for lang, body in blocks if lang in ("python", "py", "python3", "")]
    return python[-1].strip("\n") if python else None


def structured_tests(problem: Problem) -> CodeTests | str | None:
    """The problem's tests in the strongest form available: structured, else the assertion program."""
    if isinstance(problem.tests, str) and problem.entry_point:
        return from_humaneval(problem.tests, problem.entry_point) or problem.tests
    return problem.tests


def guarantee_of(problem: Problem) -> str:
    """`structured` when the problem's tests compare outside the sandbox; `proxied` when its asserts run
    in a process of their own that calls the program's function; `in-process` otherwise."""
    if not isinstance(structured_tests(problem), str):
        return STRUCTURED
    return PROXIED if problem.entry_point else IN_PROCESS


def isolation_report(sandbox: SandboxConfig, problems: Iterable[Problem]) -> dict | None:
    """For stats and cards: the layers code verification runs under and how many code problems have each
    guarantee; None without code problems. Raises (DistillError) where isolation is too weak."""
    code = [p for p in problems if p.domain == "code"]
    if not code:
        return None
    return {"isolation": list(check_isolation(sandbox)), "guarantees": dict(Counter(guarantee_of(p) for p in code))}


def solution_program(problem: Problem, code: str) -> str:
    """A HumanEval-style body without its `def` line gets the prompt in front."""
    prompt = problem.meta.get("prompt")
    if problem.entry_point and f"def {problem.entry_point}" not in code and isinstance(prompt, str):
        return prompt + code
    return code


def build_program(problem: Problem, code: str) -> str:
    """Solution then the assertion tests (the in-process form)."""
    return f"{solution_program(problem, code)}\n\n{problem.tests}\n"


def check_code(problem: Problem, answer_text: str, sandbox: SandboxConfig) -> CodeVerdict:
    tests = structured_tests(problem)
    if not tests or (isinstance(tests, CodeTests) and not (tests.calls or tests.stdio)):
        return CodeVerdict(False, "problem has no tests to run", None)
    code = extract_code(answer_text)
    if code is None:
        return CodeVerdict(False, "no Python code block in the answer", None)
    check_isolation(sandbox)
    program = solution_program(problem, code)
    if isinstance(tests, str) and problem.entry_point:
        result = run_sandboxed(program, sandbox, mode="proxy", fn_name=problem.entry_point, tests=tests,
                               prelude=problem.meta.get("prompt") or problem.problem)
        detail = f"all tests passed in {result.duration_s:.2f} s (asserts ran apart from the program)" \
            if result.passed else result.reason
        return CodeVerdict(result.passed, detail, code, PROXIED, result.isolation)
    if isinstance(tests, str):
        result = run_sandboxed(build_program(problem, code), sandbox, mode="assert")
        detail = f"all tests passed in {result.duration_s:.2f} s (asserts ran in-process)" if result.passed \
            else result.reason
        return CodeVerdict(result.passed, detail, code, IN_PROCESS, result.isolation)
    program = with_preamble(program, tests.origin)
    if tests.calls:
        return _check_calls(program, tests, sandbox, code)
    return _check_stdio(program, tests, sandbox, code)


def with_preamble(program: str, origin: str) -> str:
    """The program as the tests' origin runs it: after its grader's import block, if it has one."""
    block = preamble(origin)
    return f"{block}\n{program}" if block else program


def _check_calls(program: str, tests: CodeTests, sandbox: SandboxConfig, code: str) -> CodeVerdict:
    result = run_sandboxed(program, sandbox, mode="call", calls=[c.args for c in tests.calls], fn_name=tests.fn_name)
    failure = _run_failure(result)
    for i, case in enumerate(tests.calls):
        if failure:
            break
        if i >= len(result.results):
            failure = f"call {i + 1} of {len(tests.calls)} gave no result"
            break
        ok, why = call_matches(result.results[i], case, tests)
        if not ok:
            failure = f"call {i + 1} of {len(tests.calls)}: {tests.fn_name}({case.args[1:-1][:80]}) {why}"
    if failure:
        return CodeVerdict(False, failure, code, STRUCTURED, result.isolation)
    return CodeVerdict(True, f"all {len(tests.calls)} calls matched in {result.duration_s:.2f} s", code,
                       STRUCTURED, result.isolation)


def _check_stdio(program: str, tests: CodeTests, sandbox: SandboxConfig, code: str) -> CodeVerdict:
    total, isolation = 0.0, ()
    for i, case in enumerate(tests.stdio):
        result = run_sandboxed(program, sandbox, mode="script", stdin=case.input)
        total += result.duration_s
        isolation = result.isolation
        failure = _run_failure(result)
        if not failure and not stdout_matches(result.stdout, case.output, tests.float_tol, tests.origin):
            failure = f"wrong output: printed {result.stdout.strip()[:80]!r}"
        if failure:
            return CodeVerdict(False, f"test {i + 1} of {len(tests.stdio)}: {failure}", code, STRUCTURED, isolation)
    return CodeVerdict(True, f"all {len(tests.stdio)} stdin/stdout tests matched in {total:.2f} s", code,
                       STRUCTURED, isolation)


def _run_failure(result: SandboxResult) -> str:
    if result.timed_out or result.returncode != 0 or result.reason:
        return result.reason or f"exit code {result.returncode}"
    return ""
