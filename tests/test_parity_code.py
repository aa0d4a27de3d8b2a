"""Code verdicts against the graders the published numbers come from: LiveCodeBench's
(lcb_runner/evaluation/testing_util.py) and APPS/TACO's (their testing_util), as behaviour cases (those
repositories publish no test suite of their own), each run end to end: the program in the real sandbox,
its output compared as the tests' origin compares it.

Each case carries the origin grader's verdict; DELIBERATE lists the cases where distill decides otherwise on
purpose, with the reason. docs/parity.md gives the counts; docs/sandbox.md the rules per origin."""
from __future__ import annotations

import json

import pytest

from distill.records import CallCase, CodeTests, Problem, StdioCase
from distill.verify import verify_inline

LCB = "LiveCodeBench grader"
PY = "Python without an origin preamble"
APPS = "APPS/TACO grader"


def printing(text: str) -> str:
    return f"```python\nimport sys\nsys.stdout.write({text!r})\n```"


def stdio_problem(expected: str, origin: str) -> Problem:
    return Problem(id="s", problem="p", domain="code",
                   tests=CodeTests(stdio=[StdioCase(input="", output=expected)], origin=origin))


# (source, id, what the program prints, the expected output, the origin grader's verdict)
STDOUT_CASES = [
    (LCB, "decimal-trailing-zero", "0.5\n", "0.50\n", True),
    (LCB, "decimal-exponent", "1e3\n", "1000\n", True),
    (LCB, "decimal-integer-as-float", "3.0\n", "3\n", True),
    (LCB, "line-breaks-differ", "1\n2 3\n", "1 2\n3\n", False),
    (LCB, "trailing-spaces", "1 2   \n", "1 2\n", True),
    (LCB, "outer-blank-lines", "\n\n1\n\n", "1\n", True),
    (LCB, "inner-blank-line", "1\n\n2\n", "1\n2\n", False),
    (LCB, "inner-spaces-numbers", "1   2\n", "1 2\n", True),
    (LCB, "inner-spaces-words", "a   b\n", "a b\n", False),
    (LCB, "case-differs", "YES\n", "yes\n", False),
    (LCB, "negative-zero", "-0\n", "0\n", True),
    (LCB, "close-but-not-equal", "0.3333333\n", "0.3333333333\n", False),
    (LCB, "missing-line", "1\n", "1\n2\n", False),
    (APPS, "tokens-across-lines", "1\n2 3\n", "1 2\n3\n", True),
    (APPS, "float-within-allclose", "1.000001\n", "1.0\n", True),
    (APPS, "float-outside-allclose", "1.001\n", "1.0\n", False),
    (APPS, "word-differs", "NO\n", "YES\n", False),
    (APPS, "order-of-tokens", "2 1\n", "1 2\n", False),
]

# (source, id, the function's body returning a value, expected (JSON as LCB stores it), verdict)
CALL_CASES = [
    (LCB, "tuple-as-list", "return (1, 2)", "[1, 2]", True),
    (LCB, "nested-tuple", "return [(1, 2)]", "[[1, 2]]", False),
    (LCB, "int-equals-float", "return 1", "1.0", True),
    (LCB, "bool-equals-int", "return True", "1", True),
    (LCB, "no-float-tolerance", "return 0.1 + 0.2", "0.3", False),
    (LCB, "string", "return 'abc'", '"abc"', True),
]

# (source, id, a solution that uses names it never imports, origin, the origin grader's verdict)
PREAMBLE_CASES = [
    (LCB, "deque-counter", "def f(xs):\n    return len(deque(Counter(xs).elements()))", "livecodebench", True),
    (LCB, "typing-list", "def f(xs: List[int]) -> List[int]:\n    return len(xs)", "livecodebench", True),
    (LCB, "heapq-bisect", "def f(xs):\n    h = list(xs)\n    heapify(h)\n    return bisect_left(sorted(xs), h[0]) + 3",
     "livecodebench", True),
    (LCB, "lru-cache-accumulate", ("@lru_cache(None)\ndef g(n):\n    return n\ndef f(xs):\n"
     "    return list(accumulate(xs))[-1] - g(3) + 1"), "livecodebench", True),
    (LCB, "recursion-limit", ("def f(xs):\n    def d(n):\n        return 0 if n == 0 else 1 + d(n - 1)\n"
     "    return d(3000) - 2997"), "livecodebench", True),
    (APPS, "apps-counter", "def f(xs):\n    return sum(Counter(xs).values())", "apps", True),
    (APPS, "taco-typing-list", "def f(xs: List[int]) -> int:\n    return len(xs)", "taco", True),
    (APPS, "apps-no-bisect", "def f(xs):\n    return bisect_left(xs, 9)", "apps", False),
    # no origin preamble: an annotation with an unimported name fails, as plain Python does (the sandbox's
    # own `from __future__ import annotations` no longer leaks into the program)
    (PY, "no-origin-no-preamble", "def f(xs: List[int]) -> int:\n    return 3", "codeforces", False),
]

DELIBERATE: dict[tuple[str, str], str] = {}


@pytest.mark.parametrize("case", STDOUT_CASES, ids=[c[1] for c in STDOUT_CASES])
def test_stdout_is_compared_as_the_origin_compares_it(case):
    source, _ident, printed, expected, verdict = case
    origin = "livecodebench" if source == LCB else "apps"
    result = verify_inline(stdio_problem(expected, origin), printing(printed))
    assert result.passed is verdict, result.detail


@pytest.mark.parametrize("case", CALL_CASES, ids=[c[1] for c in CALL_CASES])
def test_call_results_are_compared_as_lcb_compares_them(case):
    _source, _ident, body, expected, verdict = case
    tests = CodeTests(fn_name="f", calls=[CallCase(args="[]", expected=repr(json.loads(expected)))],
                      json_values=True, origin="livecodebench")
    result = verify_inline(Problem(id="c", problem="p", domain="code", tests=tests),
                           f"```python\nclass Solution:\n    def f(self):\n        {body}\n```")
    assert result.passed is verdict, result.detail


@pytest.mark.parametrize("case", PREAMBLE_CASES, ids=[c[1] for c in PREAMBLE_CASES])
def test_solutions_run_after_the_origins_import_block(case):
    _source, _ident, code, origin, verdict = case
    tests = CodeTests(fn_name="f", calls=[CallCase(args="[[1, 2, 2]]", expected="3")], json_values=True,
                      origin=origin)
    result = verify_inline(Problem(id="p", problem="p", domain="code", tests=tests), f"```python\n{code}\n```")
    assert result.passed is verdict, result.detail
