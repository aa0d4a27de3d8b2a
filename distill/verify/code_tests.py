"""Structured code tests: where they come from (public datasets, HumanEval asserts) and how outputs compare.

Everything here runs in the trusted verifying process. The sandbox only ever sees a test's input; the
program's stdout, or the repr of its function's result, comes back and is compared here, so a program
cannot read, forge or memorise an expected value, and an object that "equals everything" never leaves
the sandbox (only its repr does, parsed back with `ast.literal_eval` into plain values).

Importers (`from_livecodebench`, `from_apps`, `from_codeforces`) map a dataset row's test fields onto
`CodeTests`; `from_humaneval` turns a `check(candidate)` function into calls when every assert has a
plain shape (`candidate(args) == value`, `abs(candidate(args) - value) < tol`, `candidate(args)`,
`not candidate(args)`, `... is True`), and returns None otherwise (the program then runs its own
asserts, the weaker guarantee).
"""
from __future__ import annotations

import ast
import base64
import functools
import io
import json
import math
import pickle
import zlib
from decimal import Decimal, InvalidOperation
from typing import Any

from distill.records import CallCase, CodeTests, StdioCase

# ---------------------------------------------------------------------------------- comparisons
# What each origin's own grader puts before a solution, so a solution that uses `deque`, `Counter` or
# `List` without importing them passes here as it passes there. LiveCodeBench (lcb_runner's
# testing_util) star-imports these modules, then imports them by name and raises the recursion limit.
_LCB_MODULES = ("string", "re", "datetime", "collections", "heapq", "bisect", "copy", "math", "random",
                "statistics", "itertools", "functools", "operator", "io", "sys", "json")
LCB_PREAMBLE = "".join(f"from {m} import *\n" for m in (*_LCB_MODULES, "builtins", "typing")) + \
    "".join(f"import {m}\n" for m in _LCB_MODULES) + "sys.setrecursionlimit(50000)\n"
# APPS and TACO (their testing_util) import these; their `import numpy as np` is left out: the sandbox
# has the standard library only.
APPS_PREAMBLE = (
    "import sys\nimport time\nimport itertools\n"
    "from itertools import accumulate, product, permutations, combinations\nimport collections\n"
    "from collections import Counter, OrderedDict, deque, defaultdict, ChainMap\n"
    "from functools import lru_cache\nimport math\n"
    "from math import sqrt, sin, cos, tan, ceil, fabs, floor, gcd, exp, log, log2\n"
    "import fractions\nfrom typing import List, Tuple\nimport random\nimport heapq\nfrom heapq import *\n")
PREAMBLES = {"livecodebench": LCB_PREAMBLE, "apps": APPS_PREAMBLE, "taco": APPS_PREAMBLE}
# numpy.allclose's defaults, which APPS and TACO compare numeric outputs with
APPS_RTOL, APPS_ATOL = 1e-5, 1e-8


def preamble(origin: str) -> str:
    """The import block the origin's grader runs before a solution ("" for Codeforces, HumanEval, ours)."""
    return PREAMBLES.get(origin, "")


def stdout_matches(actual: str, expected: str, float_tol: float | None = None, origin: str = "") -> bool:
    """Does a program's stdout match, compared as the tests' origin compares it?

    livecodebench: line by line (outer blank lines and each line's edge spaces ignored, the line count must
    agree), each line equal as text or as a row of decimals ("0.5" == "0.50", "1e3" == "1000").
    apps / taco: token by token, numbers within numpy.allclose's tolerance.
    anything else (Codeforces without a checker, our own): token by token, as testlib's default
    checker; numbers may differ by `float_tol` when it is set."""
    if origin == "livecodebench":
        return _lcb_lines_match(actual, expected)
    if origin in ("apps", "taco"):
        got, want = actual.split(), expected.split()
        return len(got) == len(want) and all(a == b or _close_apps(a, b) for a, b in zip(got, want))
    got, want = actual.split(), expected.split()
    if len(got) != len(want):
        return False
    return all(a == b or (float_tol is not None and _close_tokens(a, b, float_tol)) for a, b in zip(got, want))


def _lcb_lines_match(actual: str, expected: str) -> bool:
    got = [line.strip() for line in actual.strip().split("\n")]
    want = [line.strip() for line in expected.strip().split("\n")]
    return len(got) == len(want) and all(a == b or _same_decimals(a, b) for a, b in zip(got, want))


def _same_decimals(a: str, b: str) -> bool:
    try:
        return [Decimal(x) for x in a.split()] == [Decimal(y) for y in b.split()]
    except (InvalidOperation, ValueError):
        return False


def _close_apps(a: str, b: str) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return abs(x - y) <= APPS_ATOL + APPS_RTOL * abs(y)


def _close_tokens(a: str, b: str, tol: float) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return math.isclose(x, y, rel_tol=tol, abs_tol=tol)


def parse_literal(text: str) -> tuple[bool, Any]:
    """(ok, value): a program's repr read back as plain Python values, or not at all."""
    try:
        return True, ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


def call_matches(result: str, case: CallCase, tests: CodeTests) -> tuple[bool, str]:
    """Does the repr a call returned satisfy `case`? (ok, why not)."""
    if result.startswith("!"):
        return False, f"raised {result[1:][:150]}"
    ok, value = parse_literal(result)
    if not ok:
        return False, f"returned a value that is not a plain literal: {result[:80]}"
    if tests.origin == "livecodebench":
        value = list(value) if isinstance(value, tuple) else value  # LCB converts the returned tuple only
    elif tests.json_values:
        value = _lists(value)
    if case.compare == "truthy":
        return bool(value), f"returned {result[:80]}, expected a true value"
    if case.compare == "falsy":
        return not value, f"returned {result[:80]}, expected a false value"
    for text in [case.expected, *case.alternatives]:
        expected = ast.literal_eval(text)
        if case.compare == "close":
            if _is_number(value) and abs(value - expected) < (case.tolerance or 1e-6):
                return True, ""
        elif _equal(value, expected, tests.float_tol):
            return True, ""
    return False, f"returned {result[:80]}"


def _lists(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _equal(a: Any, b: Any, tol: float | None) -> bool:
    """Python equality; with a tolerance, numbers inside equal-shaped containers may differ by it."""
    if tol is None:
        return a == b
    if _is_number(a) and _is_number(b):
        return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    if isinstance(a, (list, tuple)) and type(a) is type(b):
        return len(a) == len(b) and all(_equal(x, y, tol) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k], tol) for k in a)
    return a == b


# ------------------------------------------------------------------------------- HumanEval asserts
@functools.lru_cache(maxsize=4096)
def from_humaneval(test: str, entry_point: str) -> CodeTests | None:
    """HumanEval's `check(candidate)` as calls, or None when any statement is not a plain assert."""
    try:
        module = ast.parse(test)
    except SyntaxError:
        return None
    checks = [node for node in module.body if isinstance(node, ast.FunctionDef) and node.name == "check"]
    others = [node for node in module.body if node not in checks and not _harmless_top_level(node, entry_point)]
    if len(checks) != 1 or others or len(checks[0].args.args) != 1:
        return None
    name = checks[0].args.args[0].arg
    calls = []
    for statement in checks[0].body:
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # a docstring or a bare string
        if not isinstance(statement, ast.Assert):
            return None
        if isinstance(statement.test, ast.Constant) and statement.test.value is True:
            continue  # `assert True, "..."`: HumanEval's filler
        case = _assert_to_call(statement.test, name)
        if case is None:
            return None
        calls.append(case)
    if not calls:
        return None
    return CodeTests(fn_name=entry_point, calls=calls, origin="humaneval-converted")


def _harmless_top_level(node: ast.stmt, entry_point: str) -> bool:
    """METADATA dicts, docstrings and the `check(entry_point)` call that the loader appends."""
    if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id == "METADATA" for t in node.targets):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return True
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and \
        isinstance(node.value.func, ast.Name) and node.value.func.id == "check" and \
        [getattr(a, "id", None) for a in node.value.args] == [entry_point]


def _assert_to_call(test: ast.expr, name: str) -> CallCase | None:
    if _is_candidate_call(test, name):
        args = _call_args(test)
        return CallCase(args=args, expected="True", compare="truthy") if args is not None else None
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not) and _is_candidate_call(test.operand, name):
        args = _call_args(test.operand)
        return CallCase(args=args, expected="False", compare="falsy") if args is not None else None
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return None
    left, op, right = test.left, test.ops[0], test.comparators[0]
    if isinstance(op, (ast.Eq, ast.Is)):
        if _is_candidate_call(right, name) and not _is_candidate_call(left, name):
            left, right = right, left
        if not _is_candidate_call(left, name):
            return None
        if isinstance(op, ast.Is) and not (isinstance(right, ast.Constant) and right.value in (True, False, None)):
            return None
        args, expected = _call_args(left), _literal_source(right)
        return CallCase(args=args, expected=expected) if args is not None and expected is not None else None
    # abs(candidate(x) - v) < tol  (or <=)
    if isinstance(op, (ast.Lt, ast.LtE)) and isinstance(left, ast.Call) and _func_name(left) in ("abs", "math.fabs") \
            and len(left.args) == 1 and isinstance(left.args[0], ast.BinOp) and isinstance(left.args[0].op, ast.Sub):
        diff = left.args[0]
        call, other = (diff.left, diff.right) if _is_candidate_call(diff.left, name) else (diff.right, diff.left)
        if not _is_candidate_call(call, name):
            return None
        args, expected, tol = _call_args(call), _literal_source(other), _literal_source(right)
        if args is None or expected is None or tol is None:
            return None
        return CallCase(args=args, expected=expected, compare="close", tolerance=float(ast.literal_eval(tol)))
    return None


def _func_name(call: ast.Call) -> str:
    return ast.unparse(call.func)


def _is_candidate_call(node: ast.expr, name: str) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name


def _call_args(call: ast.Call) -> str | None:
    if call.keywords or any(isinstance(a, ast.Starred) for a in call.args):
        return None
    return _literal_source(ast.List(elts=call.args, ctx=ast.Load()))


def _literal_source(node: ast.expr) -> str | None:
    """The node's value as literal source text, when it is a literal or constant arithmetic on literals
    (`2.0/3.0`, `3 * 19`, `'ab' + 'c'`); None otherwise (names, calls, comprehensions)."""
    try:
        value = _fold(node)
    except (ValueError, TypeError, ArithmeticError, MemoryError, RecursionError):
        return None
    text = repr(value)
    return text if parse_literal(text)[0] else None  # e.g. float('nan') has no literal form


_FOLDABLE = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
             ast.Div: lambda a, b: a / b, ast.FloorDiv: lambda a, b: a // b, ast.Mod: lambda a, b: a % b}
_MAX_FOLDED = 100_000  # longest string/list a folded product may make


def _fold(node: ast.expr) -> Any:
    """Evaluate literals and + - * / // % on them; anything else is ValueError. Runs on dataset text
    in the verifying process, so it never calls or looks up anything."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        items = [_fold(e) for e in node.elts]
        return {ast.Tuple: tuple, ast.List: list, ast.Set: set}[type(node)](items)
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_fold(k): _fold(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _fold(node.operand)
        if not _is_number(value):
            raise ValueError("sign of a non-number")
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _FOLDABLE:
        left, right = _fold(node.left), _fold(node.right)
        if isinstance(node.op, ast.Mult) and any(isinstance(v, (str, list, tuple)) for v in (left, right)):
            count = right if isinstance(left, (str, list, tuple)) else left
            if not isinstance(count, int) or count * len(left if isinstance(left, (str, list, tuple)) else right) \
                    > _MAX_FOLDED:
                raise ValueError("folded sequence too long")
        return _FOLDABLE[type(node.op)](left, right)
    raise ValueError(f"not a constant: {ast.dump(node)[:40]}")


# --------------------------------------------------------------------------------------- importers
def from_livecodebench(row: dict) -> CodeTests:
    """A LiveCodeBench code_generation row: `public_test_cases` and `private_test_cases` (JSON, or the
    base64 zlib pickle the lite release stores, read with a loader that builds only plain values),
    `metadata` with `func_name` for LeetCode-style (functional) problems."""
    cases = _json_field(row.get("public_test_cases")) + _json_field(row.get("private_test_cases"))
    metadata = row.get("metadata") or {}
    if isinstance(metadata, str):
        metadata = json.loads(metadata or "{}")
    fn_name = metadata.get("func_name")
    if any(case.get("testtype") == "functional" for case in cases):
        if not fn_name:
            raise ValueError("functional test cases but no metadata.func_name")
        calls = [CallCase(args=repr([json.loads(line) for line in case["input"].split("\n") if line.strip()]),
                          expected=repr(json.loads(case["output"]))) for case in cases]
        return CodeTests(fn_name=fn_name, calls=calls, json_values=True, origin="livecodebench")
    return CodeTests(stdio=[StdioCase(input=c["input"], output=c["output"]) for c in cases], origin="livecodebench")


def from_apps(row: dict, *, origin: str = "apps") -> CodeTests:
    """An APPS or TACO row: `input_output` is JSON {"inputs", "outputs", optional "fn_name"}. Call-based
    outputs are often wrapped in a one-element list; like APPS's checker we accept either form."""
    spec = row["input_output"]
    if isinstance(spec, str):
        spec = json.loads(spec)
    inputs, outputs = spec["inputs"], spec["outputs"]
    if len(inputs) != len(outputs):
        raise ValueError(f"{len(inputs)} inputs but {len(outputs)} outputs")
    if spec.get("fn_name"):
        calls = []
        for args, out in zip(inputs, outputs):
            wrapped = isinstance(out, list) and len(out) == 1
            calls.append(CallCase(args=repr(args if isinstance(args, list) else [args]),
                                  expected=repr(out[0] if wrapped else out),
                                  alternatives=[repr(out)] if wrapped else []))
        return CodeTests(fn_name=spec["fn_name"], calls=calls, json_values=True, origin=origin)
    return CodeTests(stdio=[StdioCase(input=_text(i), output=_text(o)) for i, o in zip(inputs, outputs)],
                     origin=origin)


def from_codeforces(row: dict, *, float_tol: float | None = None) -> CodeTests:
    """An open-r1/codeforces row: `official_tests` (or `examples`) as [{"input", "output"}]. Problems
    judged by a special checker (several right answers) cannot be compared as text: ValueError."""
    if row.get("checker") or row.get("generated_checker"):
        raise ValueError("this problem is judged by a custom checker; its outputs cannot be compared as text")
    cases = row.get("official_tests") or row.get("examples") or []
    if not cases:
        raise ValueError("no official_tests or examples")
    return CodeTests(stdio=[StdioCase(input=c["input"], output=c["output"]) for c in cases],
                     float_tol=float_tol, origin="codeforces")


def _text(value: Any) -> str:
    return "\n".join(map(str, value)) if isinstance(value, list) else str(value)


def _json_field(value: Any) -> list[dict]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pass
    try:
        raw = zlib.decompress(base64.b64decode(value))
        return json.loads(_PlainUnpickler(io.BytesIO(raw)).load())
    except (zlib.error, pickle.UnpicklingError, EOFError) as exc:
        raise ValueError(f"test cases are neither JSON nor the compressed form LiveCodeBench publishes ({exc})") from None


class _PlainUnpickler(pickle.Unpickler):
    """Builds str, bytes, numbers, lists, dicts and tuples only: never imports or calls anything."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")
