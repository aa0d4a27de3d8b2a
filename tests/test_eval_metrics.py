"""The estimators against their textbook definitions, on counts small enough to check by hand."""
from __future__ import annotations

import io
import itertools
import math

import numpy as np
import pytest

from distill.eval import metrics
from distill.eval.table import cell, markdown_table


def comb_formula(n: int, c: int, k: int) -> float:
    """Chen et al. 2021, eq. 1, literally: 1 - C(n-c, k) / C(n, k)."""
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def brute_force(n: int, c: int, k: int) -> float:
    """The definition: share of the k-subsets of n samples that hold at least one correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n,c,k", [(1, 0, 1), (1, 1, 1), (4, 1, 1), (4, 1, 2), (4, 2, 3), (5, 0, 3),
                                   (8, 1, 4), (8, 3, 8), (10, 2, 5), (16, 5, 2), (200, 13, 10)])
def test_pass_at_k_matches_unbiased_formula(n, c, k):
    assert metrics.pass_at_k(n, c, k) == pytest.approx(comb_formula(n, c, k), abs=1e-12)
    if n <= 10:
        assert metrics.pass_at_k(n, c, k) == pytest.approx(brute_force(n, c, k), abs=1e-12)


def test_pass_at_1_is_the_fraction_correct_and_pass_at_n_is_any_correct():
    assert metrics.pass_at_k(8, 3, 1) == pytest.approx(3 / 8)
    assert metrics.pass_at_k(8, 1, 8) == 1.0
    assert metrics.pass_at_k(8, 0, 8) == 0.0
    # Hand-made: n=4, c=2, k=2 -> 1 - C(2,2)/C(4,2) = 1 - 1/6.
    assert metrics.pass_at_k(4, 2, 2) == pytest.approx(5 / 6)


def test_pass_at_k_rejects_impossible_counts():
    with pytest.raises(ValueError, match="0 <= c <= n"):
        metrics.pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        metrics.pass_at_k(4, 1, 5)


def test_majority_vote_counts_equivalent_spellings_and_breaks_ties_by_first_seen():
    vote = metrics.majority_vote(["85", "\\text{85}", "84", None, "85.0"], [True, True, False, False, True])
    assert (vote.answer, vote.votes, vote.correct) == ("85", 3, True)
    tie = metrics.majority_vote(["12", "13", "13", "12"], [False, True, True, False])
    assert (tie.answer, tie.correct) == ("12", False)
    nothing = metrics.majority_vote([None, None], [False, False])
    assert (nothing.answer, nothing.votes, nothing.correct) == (None, 0, False)


def test_wilson_interval_known_values():
    # Wilson (1927) for 8/10 at 95%: 0.4902 .. 0.9433 (standard tables).
    low, high = metrics.wilson_interval(8, 10)
    assert (round(low, 4), round(high, 4)) == (0.4902, 0.9433)
    low, high = metrics.wilson_interval(0, 20)
    assert low == 0.0 and 0.15 < high < 0.17  # not the degenerate [0, 0] of the Wald interval


def test_bootstrap_is_deterministic_and_brackets_the_mean():
    values = [0.0, 0.25, 0.5, 1.0, 0.75, 0.0, 0.0, 0.5] * 4
    first = metrics.bootstrap_interval(values, seed=3)
    assert first == metrics.bootstrap_interval(values, seed=3)
    mean = sum(values) / len(values)
    assert first[0] < mean < first[1]
    assert first[1] - first[0] < 0.35


def test_paired_difference_detects_a_shift_marginal_intervals_would_blur():
    before = [0.0, 0.25, 0.5, 0.75, 1.0, 0.25, 0.5, 0.0] * 4
    after = [min(1.0, v + 0.25) for v in before]
    diff = metrics.paired_difference(after, before)
    assert diff.low > 0 and diff.value == pytest.approx(sum(a - b for a, b in zip(after, before)) / len(before))
    with pytest.raises(ValueError, match="pair the same problems"):
        metrics.paired_difference([0.1], [0.1, 0.2])


def test_aggregate_reports_pass_curve_and_cons_with_intervals():
    problems = [metrics.score_problem(a, p) for a, p in [
        (["4", "4", "5", "4"], [True, True, False, True]),
        (["7", "8", "8", None], [True, False, False, False]),
        ([None, None, None, None], [False, False, False, False]),
    ]]
    scores = metrics.aggregate(problems, 4)
    assert list(scores) == ["pass@1", "pass@2", "pass@4", "cons@4"]
    assert scores["pass@1"].value == pytest.approx((3 / 4 + 1 / 4 + 0) / 3)
    assert scores["pass@2"].value == pytest.approx((comb_formula(4, 3, 2) + comb_formula(4, 1, 2)) / 3)
    assert scores["pass@4"].value == pytest.approx(2 / 3)
    assert scores["cons@4"].value == pytest.approx(1 / 3)  # '4' wins and is right; '8' wins and is wrong
    assert scores["cons@4"].method == "wilson" and scores["pass@1"].method == "bootstrap"
    for est in scores.values():
        assert est.low <= est.value <= est.high


def test_markdown_table_shows_every_model_and_the_paired_delta():
    doc = {"k": 2, "sampling": {"temperature": 0.6, "top_p": 0.95},
           "benchmarks": {"demo": {}},
           "scores": {"base": {"demo": {"pass@1": {"value": 0.1, "ci_low": 0.05, "ci_high": 0.2}}},
                      "student": {"demo": {"pass@1": {"value": 0.4, "ci_low": 0.3, "ci_high": 0.5}}}},
           "deltas": {"student": {"demo": {"against": "base",
                                           "pass@1": {"value": 0.3, "ci_low": 0.2, "ci_high": 0.4}}}}}
    text = markdown_table(doc)
    assert "| demo | pass@1 | 0.100 [0.050, 0.200] | 0.400 [0.300, 0.500] | +0.300 [+0.200, +0.400] better |" in text


def test_terminal_table_reads_at_80_columns():
    """Two models and their paired difference on a real aggregate: every cell whole on an 80-column terminal."""
    from rich.console import Console

    from distill.eval.table import scores_table

    rng = np.random.default_rng(0)

    def scores(p: float) -> tuple[dict, list[float]]:
        problems = [metrics.score_problem([str(a) for a in rng.integers(0, 3, 4)], list(rng.random(4) < p))
                    for _ in range(32)]
        return ({name: est.to_json() for name, est in metrics.aggregate(problems, 4).items()},
                [s.correct / s.n for s in problems])

    (base, before), (student, after) = scores(0.2), scores(0.5)
    doc = {"k": 4, "sampling": {"temperature": 0.6, "top_p": 0.95}, "benchmarks": {"heldout": {}},
           "scores": {"base": {"heldout": base}, "student": {"heldout": student}},
           "deltas": {"student": {"heldout": {"against": "base",
                                              "pass@1": metrics.paired_difference(after, before).to_json()}}}}
    console = Console(width=80, record=True, file=io.StringIO())
    console.print(scores_table(doc))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "'heldout'" in text.splitlines()[0]  # one benchmark: named in the title, not a column per row
    for metric in ("pass@1", "pass@2", "pass@4", "cons@4"):
        row = next(line for line in text.splitlines() if line.lstrip().startswith(metric))
        assert all(cell(doc["scores"][m]["heldout"][metric]) in row for m in ("base", "student")), row
    difference = doc["deltas"]["student"]["heldout"]["pass@1"]
    assert f"{difference['value']:+.3f} [{difference['ci_low']:+.3f}, {difference['ci_high']:+.3f}]" in text
