"""Scoring one benchmark: per-problem results (pass@j, the vote) and the benchmark's estimates with intervals."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from distill.errors import DistillError
from distill.eval import metrics
from distill.files import atomic_write_text
from distill.jsonl import read_jsonl
from distill.records import Problem


def score_benchmark(verdicts_path: Path, results_path: Path, problems: dict[str, Problem], k: int,
                    seed: int) -> tuple[dict[str, Any], list[float]]:
    """Per-problem results file and the benchmark's scores; returns (scores, per-problem pass@1)."""
    samples: dict[str, dict[int, dict]] = {pid: {} for pid in problems}
    tokens, truncated, no_answer, count = 0, 0, 0, 0
    for row in read_jsonl(verdicts_path):
        if row["problem_id"] in samples and row["sample"] < k:
            samples[row["problem_id"]][row["sample"]] = row
    lines, per_problem, pass1 = [], [], []
    for pid, problem in problems.items():  # benchmark order, so results files line up across models
        rows = [samples[pid][s] for s in sorted(samples[pid])]
        if not rows:
            continue
        answers = [r["vote"] for r in rows]
        passed = [bool(r["passed"]) for r in rows]
        score = metrics.score_problem(answers, passed)
        per_problem.append(score)
        pass1.append(score.correct / score.n)
        tokens += sum(r.get("completion_tokens") or 0 for r in rows)
        truncated += sum(r.get("finish_reason") == "length" for r in rows)
        no_answer += sum(a is None for a in answers)
        count += len(rows)
        lines.append(json.dumps({
            "problem_id": pid, "n": score.n, "correct": score.correct,
            **{f"pass@{j}": round(score.pass_at(j), 6) for j in metrics.ks_to_report(score.n)},
            "cons_answer": score.vote.answer, "cons_votes": score.vote.votes, "cons_correct": score.vote.correct,
            "gold": problem.answer, "answers": answers, "passed": passed,
        }, ensure_ascii=False) + "\n")
    atomic_write_text(results_path, "".join(lines))
    if len(per_problem) < len(problems):
        raise DistillError(f"{verdicts_path}: {len(problems) - len(per_problem)} problems have no verified "
                           "sample; the generation did not finish (rerun to resume)")
    scores = {name: est.to_json() for name, est in metrics.aggregate(per_problem, k, seed=seed).items()}
    scores.update({
        "problems": len(per_problem), "samples": count,
        "mean_completion_tokens": round(tokens / max(count, 1), 1),
        "truncated_frac": round(truncated / max(count, 1), 4),
        "no_answer_frac": round(no_answer / max(count, 1), 4),
    })
    return scores, pass1
