"""The R1 quality checks, dedup, decontamination and selection on hand-written R1-format traces."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.config import DecontamConfig, DedupConfig, QualityConfig, SelectConfig
from distill.errors import DistillError
from distill.filter.checks import (
    code_in_reasoning,
    lang_mix,
    length,
    paragraphs,
    quality_checks,
    repetition,
    think_format,
    truncated,
)
from distill.filter.decontam import Decontaminator
from distill.filter.dedup import Deduplicator, signature
from distill.filter.select import Candidate, choose
from distill.records import Problem, Trace

Q = QualityConfig()
MATH = Problem(id="p1", problem="What is 6 times 7?", domain="math", answer="42")
CODE = Problem(id="c1", problem="Write f.", domain="code", tests="assert f() == 1")

REASONING = ("Okay, so I need to multiply 6 by 7. Six sevens: 7, 14, 21, 28, 35, 42.\n\n"
             "Let me double-check with 6 times 7 = 6 * 7 = 42. Yes, that is right.")
ANSWER = "Six times seven is 42.\n\n\\boxed{42}"


def r1_trace(reasoning: str = REASONING, answer: str = ANSWER, *, completion: str | None = None,
             finish_reason: str = "stop", prompt: str = "What is 6 times 7?\nPlease reason step by step, and put "
             "your final answer within \\boxed{}.", tokens: int | None = None, sample: int = 0) -> Trace:
    """A trace as the generate stage writes it: the assistant turn was prefilled with '<think>\\n'."""
    completion = completion if completion is not None else f"{reasoning}\n</think>\n\n{answer}"
    return Trace(problem_id="p1", sample=sample, teacher="deepseek-r1", prompt=[{"role": "user", "content": prompt}],
                 completion=completion, reasoning=reasoning, answer=answer, finish_reason=finish_reason,
                 prompt_tokens=30, completion_tokens=tokens if tokens is not None else len(completion) // 4)


def test_a_good_trace_passes_every_check():
    results = quality_checks(r1_trace(), MATH, Q)
    assert [name for name, _ in results] == ["think_format", "truncated", "lang_mix", "repetition", "paragraphs",
                                             "code_in_reasoning"]
    assert all(r.passed for _, r in results), results


@pytest.mark.parametrize(("trace", "needle"), [
    (r1_trace(reasoning=""), "empty or missing reasoning"),
    (r1_trace(answer=""), "no answer after </think>"),
    (r1_trace(answer="   \n"), "no answer after </think>"),
    (r1_trace(completion=f"{REASONING}\n</think>\nmore\n</think>\n\n{ANSWER}"), "2 </think> tags"),
    (r1_trace(reasoning=REASONING + "\n<think>\nagain"), "think tags inside"),
])
def test_think_format_failures(trace: Trace, needle: str):
    result = think_format(trace, MATH, Q)
    assert not result.passed
    assert needle in result.reason


def test_truncated_generation():
    result = truncated(r1_trace(answer="", finish_reason="length", tokens=32768), MATH, Q)
    assert not result.passed and "32768 tokens" in result.reason
    assert truncated(r1_trace(), MATH, Q).passed


def test_language_mixing_is_measured_against_the_prompt_script():
    mixed = REASONING + " 我们需要仔细检查这个乘法计算的结果是否正确，六乘以七等于四十二。"
    result = lang_mix(r1_trace(reasoning=mixed), MATH, Q)
    assert not result.passed
    assert "CJK" in result.reason and result.score > 0.05
    # The same reasoning under a Chinese prompt is not mixed in that direction: English is the foreign part.
    zh_prompt = "六乘以七等于多少？请逐步推理，并把最终答案放在 \\boxed{} 中。"
    chinese = "我们需要计算六乘以七。六个七相加：七，十四，二十一，二十八，三十五，四十二。所以答案是四十二。"
    assert lang_mix(r1_trace(reasoning=chinese, prompt=zh_prompt), MATH, Q).passed
    assert not lang_mix(r1_trace(reasoning=REASONING, prompt=zh_prompt), MATH, Q).passed


def test_greek_math_letters_are_not_language_mixing():
    greek = "Let θ be the angle and α, β the roots; then α + β = π/2 and sin θ = 1. " * 5
    assert lang_mix(r1_trace(reasoning=greek), MATH, Q).passed


def test_threshold_is_configurable():
    mixed = REASONING + " 六乘以七等于四十二。"
    assert not lang_mix(r1_trace(reasoning=mixed), MATH, Q).passed
    assert lang_mix(r1_trace(reasoning=mixed), MATH, QualityConfig(max_lang_mix=0.5)).passed


def test_repetition_loop():
    loop = REASONING + "\n\n" + "Wait, let me recompute 6 times 7 again to be sure it is 42. " * 60
    result = repetition(r1_trace(reasoning=loop), MATH, Q)
    assert not result.passed and result.score > 0.5
    assert "repetition loop" in result.reason
    assert repetition(r1_trace(), MATH, Q).score == 0.0


def test_length_bounds_in_tokens():
    config = QualityConfig(min_tokens=50, max_tokens=1000)
    assert not length(r1_trace(tokens=10), MATH, config).passed
    assert not length(r1_trace(tokens=5000), MATH, config).passed
    assert length(r1_trace(tokens=500), MATH, config).passed
    assert "above max_tokens=1000" in length(r1_trace(tokens=5000), MATH, config).reason


def test_over_long_paragraph():
    wall = "word " * 1000  # 5000 characters without a blank line
    result = paragraphs(r1_trace(reasoning=REASONING + "\n\n" + wall), MATH, Q)
    assert not result.passed and result.score >= 4999
    assert paragraphs(r1_trace(), MATH, Q).passed


def test_code_in_reasoning_only_matters_outside_code_problems():
    with_code = REASONING + "\n\n```python\nprint(6 * 7)\n```\n"
    assert not code_in_reasoning(r1_trace(reasoning=with_code), MATH, Q).passed
    assert code_in_reasoning(r1_trace(reasoning=with_code), CODE, Q).passed
    assert code_in_reasoning(r1_trace(reasoning=with_code), MATH, QualityConfig(allow_code_in_reasoning=True)).passed


def test_disabled_checks_do_not_run():
    config = QualityConfig(require_think=False, drop_truncated=False)
    names = [name for name, _ in quality_checks(r1_trace(reasoning=""), MATH, config)]
    assert "think_format" not in names and "truncated" not in names


# ---------------------------------------------------------------------------------------------- dedup
def test_exact_and_near_duplicates():
    base = " ".join(f"step {i}: multiply and add the carry {i * 7 % 10}" for i in range(60))
    near = base.replace("step 59", "stage 59")
    different = " ".join(f"line {i}: divide and subtract {i * 3 % 10}" for i in range(60))
    dedup = Deduplicator(DedupConfig(threshold=0.8))
    seen = [dedup.seen(key, text, signature(text, 128, 5))
            for key, text in [("a", base), ("b", base.upper()), ("c", near), ("d", different)]]
    assert seen[0] is None
    assert seen[1] == ("dedup_exact", "same text as a")  # case and spacing are normalized away
    assert seen[2][0] == "dedup_near" and "with a" in seen[2][1]
    assert seen[3] is None


# ----------------------------------------------------------------------------------------- decontam
def test_decontamination_matches_eight_grams_and_names_the_benchmark(tmp_path: Path):
    bench = tmp_path / "bench.jsonl"
    rows = [{"id": "b1", "problem": "Convert the point (0,3) in rectangular coordinates to polar coordinates."},
            {"unique_id": "b2", "question": "How many primes are below 10?"}]  # short: matched whole
    bench.write_text("".join(json.dumps(r) + "\n" for r in rows))
    decontam = Decontaminator(DecontamConfig(against=[bench]))
    hit = decontam.match("t1", "Please convert the point (0,3) in rectangular coordinates to polar coordinates now")
    assert hit["benchmark_id"] == "b1" and len(hit["ngram"].split()) == 8
    assert decontam.match("t2", "Q: how many primes are below 10? Think.")["benchmark_id"] == "b2"
    assert decontam.match("t3", "Convert the point to cylindrical coordinates please") is None
    report = decontam.report(removed_traces=2)
    assert report["problems_matched"] == 2 and report["against"][0]["problems"] == 2


def test_decontamination_rejects_a_file_without_problem_text(tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "label": 3}\n')
    with pytest.raises(DistillError, match=r"bad.jsonl:1: expected a problem text"):
        Decontaminator(DecontamConfig(against=[bad]))


# -------------------------------------------------------------------------------------------- select
CANDIDATES = [Candidate("p#0", 0, 900), Candidate("p#1", 1, 300), Candidate("p#2", 2, 600), Candidate("p#3", 3, 100)]


def test_select_policies():
    keys = lambda chosen: [c.key for c in chosen]
    assert keys(choose("p", CANDIDATES, SelectConfig(policy="all"))) == keys(CANDIDATES)
    assert keys(choose("p", CANDIDATES, SelectConfig(policy="all", k=2))) == ["p#0", "p#1"]
    assert keys(choose("p", CANDIDATES, SelectConfig(policy="shortest", k=2))) == ["p#3", "p#1"]
    first = keys(choose("p", CANDIDATES, SelectConfig(policy="random", k=2, seed=7)))
    assert first == keys(choose("p", CANDIDATES, SelectConfig(policy="random", k=2, seed=7)))  # seeded
    assert len(first) == 2 and set(first) <= set(keys(CANDIDATES))
    seeds = {tuple(keys(choose("p", CANDIDATES, SelectConfig(policy="random", k=2, seed=s)))) for s in range(20)}
    assert len(seeds) > 1


def test_diverse_selection_prefers_different_traces():
    texts = {"p#0": "alpha beta gamma delta epsilon " * 20, "p#1": "alpha beta gamma delta epsilon " * 20 + "zeta",
             "p#2": "completely other words about geometry and circles " * 12, "p#3": "alpha beta gamma delta " * 25}
    sigs = {key: signature(text, 128, 3) for key, text in texts.items()}
    chosen = choose("p", CANDIDATES, SelectConfig(policy="diverse", k=2), sigs)
    assert {c.key for c in chosen} == {"p#3", "p#2"}  # the shortest, then the one least like it
