"""Per-(seed, problem, sample) random streams: a 63-bit key and a counter-based uniform per token.

Pure Python (no torch) so the CLI and the openai backend can derive keys cheaply; see sampling.py
for how the uniforms turn into tokens.
"""
from __future__ import annotations

import hashlib

_MASK = (1 << 64) - 1


def request_key(seed: int, problem_id: str, sample: int) -> int:
    """63-bit key of one (seed, problem, sample): stable across processes, platforms and Python versions.

    63 bits, not 64, so it travels as a signed int64 through msgpack (vLLM's engine-core IPC) and JSON.
    """
    digest = hashlib.sha256(f"{seed}\x00{problem_id}\x00{sample}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def uniform(key: int, position: int) -> float:
    """U[0, 1) for output token `position` of the request with `key` (53 random bits)."""
    return (_splitmix64(key ^ _splitmix64(position)) >> 11) * (1.0 / (1 << 53))
