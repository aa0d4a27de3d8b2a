"""Code: the answer's Python code block, run with the problem's tests inside the sandbox."""
from __future__ import annotations

import re

from distill.config import SandboxConfig
from distill.records import Problem
from distill.verify.sandbox import SandboxResult, run_sandboxed

CHECK = "code_tests"

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(answer_text: str) -> str | None:
    """The last fenced block tagged python/py (or untagged); None when the answer has no code block."""
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(answer_text)]
    python = [body for lang, body in blocks if lang in ("python", "py", "python3", "")]
    return python[-1].strip("\n") if python else None


def build_program(problem: Problem, code: str) -> str:
    """Solution then tests. A HumanEval-style body without its `def` line gets the prompt in front."""
    prompt = problem.meta.get("prompt")
    if problem.entry_point and f"def {problem.entry_point}" not in code and isinstance(prompt, str):
        code = prompt + code
    return f"{code}\n\n{problem.tests}\n"


def check_code(problem: Problem, answer_text: str, sandbox: SandboxConfig) -> tuple[bool, str, str | None, SandboxResult | None]:
    if not problem.tests:
        return False, "problem has no tests to run", None, None
    code = extract_code(answer_text)
    if code is None:
        return False, "no Python code block in the answer", None, None
    result = run_sandboxed(build_program(problem, code), sandbox)
    if result.passed:
        return True, f"all tests passed in {result.duration_s:.2f} s", code, result
    return False, result.reason, code, result
