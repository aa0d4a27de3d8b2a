"""Judging eval samples: each gets the filter's verdict and its canonical answer (the majority-vote key).

One pool of verifier processes serves a whole `evaluate` call (every model and benchmark); each task both
verifies and extracts, so a sample costs one round trip and a hung sympy parse is killed like any other.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from distill.config import SandboxConfig
from distill.jsonl import JsonlWriter, read_jsonl
from distill.pool import Failure, Pool, open_pool, phase
from distill.records import Problem, Trace, trace_key
from distill.ui import progress_bar
from distill.verify import (
    PRELOAD,
    VerifyResult,
    check_name,
    extract_final_answer,
    verify_budget_s,
    verify_inline,
)
from distill.verify import math as math_verifier

FLUSH_EVERY = 64  # verdicts between flushes: bounds the work a crash can lose


@dataclass(frozen=True)
class Sample:
    """One sample to judge, as sent to a verifier process."""

    problem: Problem
    text: str
    math_timeout_s: float
    sandbox: SandboxConfig


def answer_text(trace: Trace) -> str:
    """What gets verified: the text after the reasoning, as in R1; the whole completion when the model
    never closed its reasoning (a base model that does not know the <think> format still gets judged
    on the answer it wrote, so base and student are compared on the same footing)."""
    return trace.answer if trace.answer.strip() else trace.completion


def judge(sample: Sample) -> tuple[VerifyResult, str | None]:
    """Runs in a verifier process: the verdict, then the canonical answer the vote counts."""
    problem, timeout_s = sample.problem, sample.math_timeout_s
    phase("verify", verify_budget_s(problem, timeout_s, sample.sandbox) + timeout_s)
    verdict = verify_inline(problem, sample.text, math_timeout_s=timeout_s, sandbox=sample.sandbox)
    if problem.domain == "math":  # in this process already: no second helper process for the parse
        vote = math_verifier.normalized_answer(sample.text, timeout_s)
    else:
        vote = extract_final_answer(problem, sample.text, math_timeout_s=timeout_s)
    return verdict, vote


def judge_failed(sample: Sample, failure: Failure) -> tuple[VerifyResult, None]:
    why = "verifier process killed (over its time budget)" if failure.killed else \
        f"verifier error: {failure.reason.splitlines()[0]}"
    return VerifyResult(False, check_name(sample.problem), why, None), None


def judge_pool(workers: int = 0) -> Pool:
    """The verifier processes of one evaluation (0 = one per core)."""
    return open_pool(judge, workers=workers, preload=PRELOAD)


def judge_traces(pool: Pool, traces_path: Path, verdicts_path: Path, problems: dict[str, Problem],
                 k: int, math_timeout_s: float, sandbox: SandboxConfig, progress: bool) -> None:
    """Append a verdict for every sample not yet judged (resumes by problem#sample)."""
    with JsonlWriter(verdicts_path, key=lambda r: trace_key(r["problem_id"], r["sample"])) as writer:
        def todo() -> Iterator[Trace]:  # streamed twice (count, then judge): traces can be long
            return (t for t in read_jsonl(traces_path, Trace)
                    if t.problem_id in problems and t.sample < k and not writer.has(t.key))

        total = sum(1 for _ in todo())
        # The pool reads ahead of what is written; tee keeps only that window of traces in memory.
        traces, ahead = itertools.tee(todo())
        samples = (Sample(problems[t.problem_id], answer_text(t), math_timeout_s, sandbox) for t in ahead)
        label = f"verify {verdicts_path.parent.name}/{verdicts_path.name.split('.')[0]}"
        with progress_bar(label, total, "samples", enabled=progress and total > 0) as advance:
            for n, (trace, (verdict, vote)) in enumerate(zip(traces, pool.imap(samples, judge_failed)), 1):
                writer.write({
                    "problem_id": trace.problem_id, "sample": trace.sample, "passed": verdict.passed,
                    "check": verdict.check, "detail": verdict.detail, "extracted": verdict.extracted,
                    "vote": vote, "completion_tokens": trace.completion_tokens,
                    "finish_reason": trace.finish_reason,
                })
                if n % FLUSH_EVERY == 0:
                    writer.flush()
                advance(1)
