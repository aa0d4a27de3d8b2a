"""Per-problem selection: keep at most k verified traces of each problem (all / shortest / random / diverse)."""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from distill.config import SelectConfig
from distill.filter.dedup import jaccard


@dataclass(frozen=True)
class Candidate:
    key: str
    sample: int
    length: int  # completion tokens (or characters when unknown)


def choose(problem_id: str, candidates: list[Candidate], config: SelectConfig,
           signatures: dict[str, np.ndarray] | None = None) -> list[Candidate]:
    """The candidates to keep, by the configured policy; all of them when k is unset or not exceeded."""
    k = config.k
    if k is None or len(candidates) <= k:
        return candidates
    by_sample = sorted(candidates, key=lambda c: c.sample)
    if config.policy == "all":
        return by_sample[:k]
    if config.policy == "shortest":
        return sorted(candidates, key=lambda c: (c.length, c.sample))[:k]
    if config.policy == "random":
        rng = random.Random(f"{config.seed}:{problem_id}")  # stable per problem, whatever the file order
        return sorted(rng.sample(by_sample, k), key=lambda c: c.sample)
    return _diverse(by_sample, k, signatures or {})


def _diverse(candidates: list[Candidate], k: int, signatures: dict[str, np.ndarray]) -> list[Candidate]:
    """Farthest-first: start from the shortest, then add the trace least similar to any already chosen."""
    chosen = [min(candidates, key=lambda c: (c.length, c.sample))]
    rest = [c for c in candidates if c is not chosen[0]]
    closest = {c.key: _similarity(c, chosen[0], signatures) for c in rest}
    while len(chosen) < k:
        pick = min(rest, key=lambda c: (closest[c.key], c.length, c.sample))
        chosen.append(pick)
        rest.remove(pick)
        for c in rest:
            closest[c.key] = max(closest[c.key], _similarity(c, pick, signatures))
    return sorted(chosen, key=lambda c: c.sample)


def _similarity(a: Candidate, b: Candidate, signatures: dict[str, np.ndarray]) -> float:
    if a.key in signatures and b.key in signatures:
        return jaccard(signatures[a.key], signatures[b.key])
    return 0.0
