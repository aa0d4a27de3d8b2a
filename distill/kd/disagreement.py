"""Where the student disagrees with the teacher, token by token, on a few fixed samples of a kd run.

The kd log says how far the student is from the teacher on average; this record says *where*. At the start of
a fresh run the student answers the first SAMPLES problems greedily (at most MAX_TOKENS tokens), and both
models score every token of those answers: log p_teacher(x_t) - log p_student(x_t). After training the trained
student scores the very same tokens again, so before and after compare one text, and writes an answer of its
own, scored by both.

    OUT/disagreement.jsonl   one row per sample and phase:
        phase            before        the initial student's answer, scored by the teacher and the initial student
                         after         the same tokens, scored by the teacher and the trained student
                         after_sample  the trained student's own greedy answer, scored by both
        step, sample, problem_id, problem (the user turn), completion (the answer's text)
        prompt_ids, token_ids, tokens      the prompt and answer token ids, each answer token's own text
        teacher_logprobs, student_logprobs, disagreement (teacher - student, per token), mean, mean_abs
        kl, mean_kl      the exact KL(student || teacher) over the vocabulary at each answer position

Negative disagreement: the student wrote a token the teacher finds less likely than the student does, the
tokens the reverse KL pushes down. The token mean of (teacher - student) is minus the k1 KL estimate of the
kd log, here on greedy answers. The file is rewritten whole (atomically) at each phase; a resumed run keeps
the `before` rows its first start wrote.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distill.files import atomic_open
from distill.jsonl import read_jsonl

if TYPE_CHECKING:  # the viewer reads the file through this module: it must not import torch
    import torch

    from distill.kd.teacher import Teacher

FILE = "disagreement.jsonl"
SAMPLES = 4      # problems recorded: the first of the run's problems, so every run of a problem file shows the same
MAX_TOKENS = 64  # the longest answer recorded (or the run's max_completion_length, when shorter)
PHASES = ("before", "after", "after_sample")


@dataclass
class Answers:
    """Prompt and answer token ids of the recorded samples (the answer up to and including its stop token)."""

    problem_ids: list[str]
    problems: list[str]
    prompt_ids: list[list[int]]
    token_ids: list[list[int]]


def probe_rows(prompt_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The prompts recorded: the first SAMPLES of the run's problems, in the problem file's order."""
    return prompt_rows[:SAMPLES]


def max_tokens(max_completion_length: int) -> int:
    return min(MAX_TOKENS, max_completion_length)


def answers_of(rows: list[dict[str, Any]], input_ids: torch.Tensor, attention_mask: torch.Tensor,
               completion_mask: torch.Tensor) -> Answers:
    """Answers from a generated batch (left-padded prompts, then completions masked after their stop token)."""
    keep = completion_mask.shape[1]
    prompts = [ids[mask.bool()].tolist() for ids, mask in zip(input_ids[:, :-keep], attention_mask[:, :-keep])]
    tokens = [ids[mask.bool()].tolist() for ids, mask in zip(input_ids[:, -keep:], completion_mask)]
    return Answers([r["problem_id"] for r in rows], [r["user"] for r in rows], prompts, tokens)


def pack(answers: Answers, pad_id: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The layout sampling gives and the scorers read: prompts left-padded, answers right-padded after them."""
    import torch

    width = max(len(p) for p in answers.prompt_ids)
    keep = max(max(len(t) for t in answers.token_ids), 1)
    ids, mask = [], []
    for prompt, tokens in zip(answers.prompt_ids, answers.token_ids):
        left, right = width - len(prompt), keep - len(tokens)
        ids.append([pad_id] * left + prompt + tokens + [pad_id] * right)
        mask.append([0] * left + [1] * (len(prompt) + len(tokens)) + [0] * right)
    return torch.tensor(ids), torch.tensor(mask), keep


@dataclass
class Scores:
    """Per answer token [B, keep]: each model's log-prob of the token, and the exact KL(student || teacher) over
    the whole vocabulary at its position (what the log's kl_exact averages over sampled answers)."""

    teacher: torch.Tensor
    student: torch.Tensor
    kl: torch.Tensor


def score(answers: Answers, teacher: Teacher, student: torch.nn.Module, pad_id: int,
          autocast: Callable[[], AbstractContextManager]) -> Scores:
    """Both models' log-probs of every answer token. The student is scored the way the teacher is
    (Teacher.logits: one no-grad forward), in eval mode and under the run's autocast, as training scores it."""
    from distill.kd.losses import exact_reverse_kl, token_logprobs
    from distill.kd.teacher import Teacher

    device = next(teacher.model.parameters()).device
    input_ids, attention_mask, keep = pack(answers, pad_id)
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    was_training = student.training
    student.eval()
    try:
        with autocast():
            student_logits = Teacher(student, "student").logits(input_ids, attention_mask, keep)
    finally:
        student.train(was_training)
    teacher_logits = teacher.logits(input_ids, attention_mask, keep)
    ids = input_ids[:, -keep:]
    return Scores(token_logprobs(teacher_logits, ids).cpu(), token_logprobs(student_logits, ids).cpu(),
                  exact_reverse_kl(student_logits, teacher_logits).cpu())


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def rows(phase: str, step: int, answers: Answers, scores: Scores, tokenizer) -> list[dict[str, Any]]:
    """One row per sample: its tokens with both models' log-probs, their difference and the exact KL."""
    out = []
    for sample, tokens in enumerate(answers.token_ids):
        n = len(tokens)
        t_lp, s_lp = scores.teacher[sample, :n].tolist(), scores.student[sample, :n].tolist()
        gap = [t - s for t, s in zip(t_lp, s_lp)]
        kl = scores.kl[sample, :n].tolist()
        out.append({
            "phase": phase, "step": step, "sample": sample, "problem_id": answers.problem_ids[sample],
            "problem": answers.problems[sample], "completion": tokenizer.decode(tokens),
            "prompt_ids": answers.prompt_ids[sample], "token_ids": tokens,
            # Each token decoded alone: what the page colours (a character split over two tokens shows as two).
            "tokens": [tokenizer.decode([token]) for token in tokens],
            "teacher_logprobs": t_lp, "student_logprobs": s_lp, "disagreement": gap, "kl": kl,
            "mean": _mean(gap), "mean_abs": _mean([abs(g) for g in gap]), "mean_kl": _mean(kl),
        })
    return out


# ------------------------------------------------------------------------------------------------- the file
def read(out: Path) -> list[dict[str, Any]]:
    path = Path(out) / FILE
    return list(read_jsonl(path, on_error="skip")) if path.exists() else []


def has(out: Path, phase: str) -> bool:
    return any(row.get("phase") == phase for row in read(out))


def write(out: Path, new: list[dict[str, Any]], *, keep: Iterable[str] = ()) -> Path:
    """Rewrite the file whole: the rows of the phases in `keep` that it holds, then `new`."""
    kept = [row for row in read(out) if row.get("phase") in set(keep)]
    path = Path(out) / FILE
    with atomic_open(path) as handle:
        for row in kept + new:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def recorded_answers(out: Path, phase: str = "before") -> Answers | None:
    """The answers a phase recorded, to score again; None when the file has none."""
    found = sorted((row for row in read(out) if row.get("phase") == phase), key=lambda row: row["sample"])
    if not found:
        return None
    return Answers([r["problem_id"] for r in found], [r["problem"] for r in found],
                   [r["prompt_ids"] for r in found], [r["token_ids"] for r in found])


def summary(found: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per phase: samples, tokens, and the token means of (teacher - student), of its size and of the exact KL."""
    phases: dict[str, dict[str, Any]] = {}
    for phase in PHASES:
        mine = [row for row in found if row.get("phase") == phase]
        if not mine:
            continue
        gaps = [g for row in mine for g in row.get("disagreement", [])]
        kl = [k for row in mine for k in row.get("kl", [])]
        phases[phase] = {"samples": len(mine), "tokens": len(gaps), "mean": _mean(gaps),
                         "mean_abs": _mean([abs(g) for g in gaps]), "mean_kl": _mean(kl)}
    return phases
