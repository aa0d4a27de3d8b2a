"""Verifiers on real answers: LaTeX equivalence, time bounds on pathological math, mcq letters, HumanEval code."""
from __future__ import annotations

import time

import pytest
from data_shapes import humaneval_problem, humaneval_rows

from distill.config import SandboxConfig
from distill.records import Problem
from distill.verify import MATH_GRACE_S, extract_final_answer, verify, verify_inline, verify_many
from distill.verify.code import extract_code
from distill.verify.math import last_boxed
from distill.verify.mcq import extract_letter


def math_problem(answer: str) -> Problem:
    return Problem(id="m", problem="Compute it.", domain="math", answer=answer)


# (gold, answer part of a trace, equivalent?)
EQUIVALENT = [
    ("\\frac{14}{3}", "So the quotient is \\boxed{\\dfrac{14}{3}}.", True),
    ("\\frac{14}{3}", "Hence $x = \\boxed{14/3}$", True),
    ("\\frac{14}{3}", "\\boxed{\\frac{28}{6}}", True),
    ("\\frac{14}{3}", "\\boxed{4.6667}", False),  # rounded decimals are not equal
    ("\\frac{14}{3}", "\\boxed{\\frac{3}{14}}", False),
    ("\\frac{1}{2}", "\\boxed{0.5}", True),
    ("0.25", "\\boxed{\\frac14}", True),
    ("\\frac{1}{2}", "\\boxed{0.52}", False),
    ("(-\\infty, 2]", "\\boxed{(-\\infty, 2]}", True),
    ("(-\\infty, 2]", "\\boxed{\\left(-\\infty,2\\right]}", True),
    ("(-\\infty, 2]", "\\boxed{(-\\infty, 2)}", False),
    ("[1, 3)", "\\boxed{[1,3)}", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "Therefore \\boxed{(3, \\frac{\\pi}{2})}", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\boxed{\\left(3, \\frac{\\pi}{2}\\right)}", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\boxed{\\left(\\frac{\\pi}{2}, 3\\right)}", False),
    ("(1, -2, 4)", "\\boxed{(1,-2,4)}", True),
    ("(1, -2, 4)", "\\boxed{(1,2,4)}", False),
    ("72", "Natalia sold 72 clips in total.\n\nThe final answer is 72.", True),
    ("72", "\\boxed{72}", True),
    ("72", "\\boxed{73}", False),
    ("2\\sqrt{2}", "\\boxed{\\sqrt{8}}", True),
    ("x^2 + 2x + 1", "\\boxed{(x+1)^2}", True),
    ("\\{1, 2\\}", "\\boxed{\\{2, 1\\}}", True),
    ("5", "I think it could be 5 or 6.", False),  # no boxed answer and no 'the answer is': not guessed
]


@pytest.mark.parametrize(("gold", "answer", "expected"), EQUIVALENT)
def test_math_equivalence(gold: str, answer: str, expected: bool):
    result = verify_inline(math_problem(gold), answer, math_timeout_s=5)
    assert result.passed is expected, result.detail
    assert result.check == "math_verify"
    assert result.detail


def test_last_boxed_takes_the_last_and_balances_braces():
    assert last_boxed("first \\boxed{1}, then \\boxed{\\frac{a}{b^{2}}} done") == "\\frac{a}{b^{2}}"
    assert last_boxed("\\boxed 7.") == "7"
    assert last_boxed("\\fbox{x}") == "x"
    assert last_boxed("\\boxed{unclosed") is None
    assert last_boxed("no box") is None


@pytest.fixture(scope="module")
def warm_guard():
    """Start the math helper process once so time bounds below measure verification only."""
    assert verify(math_problem("1"), "\\boxed{1}").passed


@pytest.mark.parametrize("answer", [
    "\\boxed{2^{2^{2^{2^{2^{2^{2^{2}}}}}}}}",  # a tower of powers
    "\\boxed{10^{10^{10}} - 10^{10^{10}} + 2}",
    "\\boxed{(9^{9^{9}})!}",
])
def test_pathological_math_ends_within_its_time_bound(warm_guard, answer: str):
    timeout_s = 1.0
    start = time.monotonic()
    result = verify(math_problem("1"), answer, math_timeout_s=timeout_s)
    elapsed = time.monotonic() - start
    assert not result.passed
    assert elapsed < timeout_s + MATH_GRACE_S + 1.5, f"took {elapsed:.1f} s"


def test_hundred_thousand_character_expression_is_rejected_fast(warm_guard):
    expression = "+".join(f"\\frac{{{i}}}{{{i + 1}}}" for i in range(8000))
    assert len(expression) > 100_000
    start = time.monotonic()
    result = verify(math_problem("1"), f"\\boxed{{{expression}}}", math_timeout_s=1.0)
    assert time.monotonic() - start < 1.0 + MATH_GRACE_S + 1.5
    assert not result.passed
    assert "characters long" in result.detail


def test_guarded_verify_agrees_with_inline(warm_guard):
    problem = math_problem("\\frac{1}{2}")
    for answer in ("\\boxed{0.5}", "\\boxed{\\frac{2}{4}}", "\\boxed{0.6}"):
        assert verify(problem, answer) == verify_inline(problem, answer)


def test_extract_final_answer_normalizes_equivalent_answers(warm_guard):
    problem = math_problem("\\frac{1}{2}")
    votes = {extract_final_answer(problem, a) for a in
             ("\\boxed{\\frac{1}{2}}", "\\boxed{0.5}", "The answer is 1/2.", "\\boxed{\\dfrac{2}{4}}")}
    assert votes == {"1/2"}
    assert extract_final_answer(problem, "\\boxed{1,000}") == "1000"
    assert extract_final_answer(problem, "\\boxed{0.333333}") == "1/3"
    assert extract_final_answer(problem, "no answer at all") is None


# ------------------------------------------------------------------------------------------------ mcq
MCQ = Problem(id="q", problem="Which is prime?", domain="mcq", answer="C", choices=["4", "6", "7", "9"])


@pytest.mark.parametrize(("answer", "letter", "passed"), [
    ("\\boxed{C}", "C", True),
    ("\\boxed{\\text{(C)}}", "C", True),
    ("So the answer is (C).", "C", True),
    ("Answer: C", "C", True),
    ("\\boxed{7}", "C", True),  # the text of a choice maps to its letter
    ("I first thought (A), but the answer is (B).", "B", False),
    ("\\boxed{E}", None, False),  # not one of the four choices
    ("No idea.", None, False),
    ("\\boxed{C} and again \\boxed{C}", "C", True),
    ("\\boxed{B} or \\boxed{C}", None, False),  # a hedge between two letters is no choice
])
def test_mcq_letters(answer: str, letter: str | None, passed: bool):
    assert extract_letter(MCQ, answer) == letter
    result = verify(MCQ, answer)
    assert result.passed is passed and result.check == "mcq_letter"
    assert extract_final_answer(MCQ, answer) == letter


def test_text_problems_have_no_verifier():
    result = verify(Problem(id="t", problem="Write a poem", domain="text"), "Roses are red")
    assert result.passed and result.check == "none"


# ----------------------------------------------------------------------------------------------- code
@pytest.fixture(scope="module")
def humaneval() -> list[dict]:
    return humaneval_rows(3)


def test_humaneval_canonical_solutions_pass(humaneval):
    for row in humaneval:
        answer = f"Here is the solution.\n\n```python\n{row['prompt']}{row['canonical_solution']}```\n"
        result = verify(humaneval_problem(row), answer, sandbox=SandboxConfig(timeout_s=20))
        assert result.passed, (row["task_id"], result.detail)
        assert result.check == "code_tests"
        assert result.extracted and row["entry_point"] in result.extracted


def test_humaneval_body_only_completion_gets_the_prompt(humaneval):
    row = humaneval[0]
    result = verify(humaneval_problem(row), f"```python\n{row['canonical_solution']}```", sandbox=SandboxConfig(timeout_s=20))
    assert result.passed, result.detail


def test_wrong_code_fails_naming_the_call(humaneval):
    row = humaneval[0]
    wrong = f"```python\ndef {row['entry_point']}(numbers, threshold):\n    return False\n```"
    result = verify(humaneval_problem(row), wrong, sandbox=SandboxConfig(timeout_s=20))
    assert not result.passed
    assert result.guarantee == "structured"  # HumanEval/0's asserts became calls compared outside
    assert "has_close_elements([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) returned False" in result.detail


def test_code_exiting_before_its_tests_fails(humaneval):
    row = humaneval[0]
    sneaky = f"```python\nimport os\ndef {row['entry_point']}(numbers, threshold):\n    return False\nos._exit(0)\n```"
    result = verify(humaneval_problem(row), sneaky, sandbox=SandboxConfig(timeout_s=20))
    assert not result.passed
    assert "gave no result" in result.detail


def test_answer_without_code_block_fails(humaneval):
    result = verify(humaneval_problem(humaneval[0]), "I would loop over the pairs.")
    assert not result.passed and "no Python code block" in result.detail


def test_extract_code_takes_the_last_python_block():
    text = "```bash\npip install x\n```\nfirst\n```python\na = 1\n```\nthen\n```py\nb = 2\n```"
    assert extract_code(text) == "b = 2"
    assert extract_code("no code") is None


# ------------------------------------------------------------------------------------------ verify_many
def test_verify_many_keeps_input_order_across_domains(humaneval):
    items = [(math_problem("\\frac{1}{2}"), "\\boxed{0.5}"), (MCQ, "\\boxed{A}"),
             (humaneval_problem(humaneval[1]), f"```python\n{humaneval[1]['prompt']}{humaneval[1]['canonical_solution']}```"),
             (math_problem("3"), "\\boxed{4}"), (math_problem("1"), "\\boxed{2^{2^{2^{2^{2^{2^{2}}}}}}}")] * 2
    results = list(verify_many(items, math_timeout_s=1.0, sandbox=SandboxConfig(timeout_s=20), workers=2))
    assert [r.passed for r in results] == [True, False, True, False, False] * 2
    assert [r.check for r in results[:5]] == ["math_verify", "mcq_letter", "code_tests", "math_verify", "math_verify"]
