"""Scores over k samples per problem: pass@1, unbiased pass@k, cons@k, and 95% confidence intervals.

pass@1 is the mean over the k samples of each problem (R1's "pass@1 with k samples"), averaged over
problems. pass@k uses the unbiased estimator of Chen et al. 2021 (HumanEval paper, eq. 1): with n samples
of which c pass, pass@k = 1 - C(n-c, k) / C(n, k), the chance that k draws without replacement contain a
pass. cons@k is majority voting (self-consistency): the most frequent extracted answer is the problem's
answer. The unit of sampling is the problem, so intervals come from the spread over problems: a
percentile bootstrap over problems for the continuous per-problem scores, and the Wilson score interval
for binary ones (cons@k, or pass@k when k equals n).
"""
from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with n samples, c of them correct.

    Evaluated as a product, 1 - prod_{i=n-c+1}^{n} (1 - k/i), which equals 1 - C(n-c,k)/C(n,k) without
    the huge binomials (Chen et al. 2021, fig. 3).
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def ks_to_report(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself: the pass@k curve a table shows."""
    ks = [k for k in (2 ** i for i in range(int(math.log2(n)) + 1)) if k <= n]
    if n not in ks:
        ks.append(n)
    return ks


_TEXT = re.compile(r"\\(?:text|mathrm|textbf|mbox)\{([^{}]*)\}")


def normalize_answer(answer: str | None) -> str | None:
    """A voting key: answers that differ only in LaTeX dressing, spacing or a trailing '.0' vote together.

    Deliberately string-level: grouping by symbolic equality would call the verifier k^2 times per
    problem, and for cons@k only the winning group's verdict matters, which the verifier gives.
    """
    if answer is None:
        return None
    text = _TEXT.sub(r"\1", answer.strip())
    text = text.replace("\\$", "").replace("$", "").replace("\\!", "").replace("\\,", "")
    text = text.replace("\\left", "").replace("\\right", "").replace("dfrac", "frac").replace("tfrac", "frac")
    text = re.sub(r"\s+", "", text).rstrip(".")
    if re.fullmatch(r"-?[\d,]+(\.\d+)?", text):
        text = text.replace(",", "")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
    return text or None


@dataclass(frozen=True)
class Vote:
    answer: str | None   # the winning normalized answer (None: no sample gave an answer)
    votes: int           # samples in the winning group
    correct: bool        # the verifier's verdict on the winning group


def majority_vote(answers: Sequence[str | None], passed: Sequence[bool]) -> Vote:
    """cons@k for one problem: the most common answer wins; ties go to the answer seen first.

    Samples with no extractable answer do not vote. The winner is correct when its samples passed
    the verifier (they share one normalized answer, so they share the verdict; any() guards the rare
    case where normalization merged a passing and a failing spelling).
    """
    groups: dict[str, list[int]] = {}
    for i, answer in enumerate(answers):
        key = normalize_answer(answer)
        if key is not None:
            groups.setdefault(key, []).append(i)
    if not groups:
        return Vote(None, 0, False)
    best = max(groups.items(), key=lambda kv: (len(kv[1]), -kv[1][0]))
    return Vote(best[0], len(best[1]), any(passed[i] for i in best[1]))


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    method: str  # "bootstrap" | "wilson"

    def to_json(self) -> dict[str, float | str]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high, "ci": self.method}

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def wilson_interval(successes: float, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion: sane at 0, 1 and small n, unlike p +- z*se."""
    if trials <= 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_interval(values: Sequence[float], *, resamples: int = 2000, seed: int = 0,
                       level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap of the mean over problems (the problems are the random unit)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return 0.0, 1.0
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(resamples, data.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def estimate(values: Sequence[float], *, seed: int = 0) -> Estimate:
    """Mean with a 95% interval: Wilson when every value is 0 or 1, else a bootstrap over problems."""
    data = np.asarray(values, dtype=np.float64)
    mean = float(data.mean()) if data.size else 0.0
    if data.size and np.all((data == 0) | (data == 1)):
        low, high = wilson_interval(float(data.sum()), int(data.size))
        return Estimate(mean, low, high, "wilson")
    low, high = bootstrap_interval(data, seed=seed)
    return Estimate(mean, low, high, "bootstrap")


def paired_difference(after: Sequence[float], before: Sequence[float], *, resamples: int = 2000,
                      seed: int = 0) -> Estimate:
    """Mean of after - before over the same problems, with a paired bootstrap 95% interval.

    Pairing removes the between-problem variance both models share, so this is the interval to hold
    an improvement against (two overlapping marginal intervals can still hide a clear paired gain).
    """
    a, b = np.asarray(after, dtype=np.float64), np.asarray(before, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: {a.size} vs {b.size} problems; pair the same problems")
    diff = a - b
    low, high = bootstrap_interval(diff, resamples=resamples, seed=seed)
    return Estimate(float(diff.mean()) if diff.size else 0.0, low, high, "paired-bootstrap")


@dataclass(frozen=True)
class ProblemScore:
    """What one problem contributes: n samples, c correct, the vote."""

    n: int
    correct: int
    vote: Vote

    def pass_at(self, k: int) -> float:
        return pass_at_k(self.n, self.correct, k)


def score_problem(answers: Sequence[str | None], passed: Sequence[bool]) -> ProblemScore:
    if len(answers) != len(passed):
        raise ValueError("score_problem: one answer per verdict")
    return ProblemScore(len(passed), int(sum(bool(p) for p in passed)), majority_vote(answers, passed))


def aggregate(problems: Sequence[ProblemScore], k: int, *, seed: int = 0) -> dict[str, Estimate]:
    """Benchmark scores from per-problem ones: pass@1, pass@j for j in 2,4..k, cons@k; each with a CI.

    A problem with fewer than k samples (a run cut short) still counts for pass@j with j <= its n.
    """
    if not problems:
        return {}
    scores: dict[str, Estimate] = {}
    for j in ks_to_report(k):
        usable = [p.pass_at(j) for p in problems if p.n >= j]
        if usable:
            scores[f"pass@{j}"] = estimate(usable, seed=seed)
    scores[f"cons@{k}"] = estimate([float(p.vote.correct) for p in problems], seed=seed)
    return scores
