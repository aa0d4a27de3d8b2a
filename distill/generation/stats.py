"""The stats JSON written beside the traces: lengths, truncation, finish reasons, speed of this run.

Distributions are computed over the whole output file (earlier runs included) by streaming it once;
token counts go into a Counter keyed by length, so memory is bounded by max_tokens, not by traces.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distill.config import GenerateConfig
from distill.jsonl import JsonlReader


@dataclass
class RunCounters:
    """What this call did (as opposed to what the file holds)."""

    existing: int = 0          # traces already in the file when the run started
    written: int = 0
    skipped: int = 0
    output_tokens: int = 0
    prompt_tokens: int = 0
    wall_s: float = 0.0        # the whole call, teacher loading included
    load_s: float = 0.0        # loading the teacher (engine start, model load, server discovery)
    too_long: list[str] = field(default_factory=list)
    finish_reasons: Counter[str] = field(default_factory=Counter)
    splits: Counter[str] = field(default_factory=Counter)

    def add(self, completion) -> None:
        self.written += 1
        self.output_tokens += completion.completion_tokens
        self.prompt_tokens += completion.prompt_tokens
        self.finish_reasons[str(completion.finish_reason)] += 1


def quantiles(counts: Counter[int], qs: tuple[float, ...] = (0.5, 0.9, 0.99)) -> dict[str, Any]:
    """Exact min/mean/quantiles/max of a length histogram ({length: how many})."""
    total = sum(counts.values())
    if total == 0:
        return {"count": 0}
    out: dict[str, Any] = {"count": total, "mean": round(sum(k * v for k, v in counts.items()) / total, 2),
                           "min": min(counts), "max": max(counts), "total": sum(k * v for k, v in counts.items())}
    ordered = sorted(counts.items())
    for q in qs:
        rank, seen = max(1, math.ceil(q * total)), 0  # nearest-rank definition
        for value, count in ordered:
            seen += count
            if seen >= rank:
                out[f"p{int(q * 100)}"] = value
                break
    return out


def file_stats(output: Path, *, config: GenerateConfig, digest: str, counters: RunCounters) -> dict[str, Any]:
    lengths: Counter[int] = Counter()
    prompt_lengths: Counter[int] = Counter()
    reasons: Counter[str] = Counter()
    problems: set[str] = set()
    empty_reasoning = empty_answer = 0
    reader = JsonlReader(output, on_error="skip") if output.exists() else []
    for obj in reader:
        lengths[int(obj.get("completion_tokens") or 0)] += 1
        prompt_lengths[int(obj.get("prompt_tokens") or 0)] += 1
        reasons[str(obj.get("finish_reason"))] += 1
        problems.add(str(obj.get("problem_id")))
        empty_reasoning += not obj.get("reasoning")
        empty_answer += not obj.get("answer")
    traces = sum(lengths.values())
    generating = max(counters.wall_s - counters.load_s, 1e-9)
    return {
        "output": str(output),
        "config_hash": digest,
        "model": config.model,
        "backend": config.backend,
        "shard": config.shard,
        "n": config.sampling.n,
        "sampling": config.sampling.model_dump(),
        "problems": len(problems),
        "traces": traces,
        "bad_lines": getattr(reader, "skipped", 0),
        "completion_tokens": quantiles(lengths),
        "prompt_tokens": quantiles(prompt_lengths),
        "finish_reasons": dict(reasons),
        "truncation_rate": round(reasons.get("length", 0) / traces, 4) if traces else 0.0,
        "empty_reasoning": empty_reasoning,
        "empty_answer": empty_answer,
        "run": {
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "existing_before": counters.existing,
            "written": counters.written,
            "skipped_existing": counters.skipped,
            "prompt_too_long": len(counters.too_long),
            "wall_s": round(counters.wall_s, 3),
            "load_s": round(counters.load_s, 3),
            "output_tokens": counters.output_tokens,
            "prompt_tokens": counters.prompt_tokens,
            # rates over the generating time, teacher loading excluded
            "output_tokens_per_s": round(counters.output_tokens / generating, 2),
            "samples_per_s": round(counters.written / generating, 3),
            "finish_reasons": dict(counters.finish_reasons),
            "reasoning_split": dict(counters.splits),
        },
    }
