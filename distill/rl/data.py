"""RL problems -> prompt rows TRL samples from, and TRL's completions -> what the rewards see.

Prompts are rendered here, not by TRL, so they are exactly the generation stage's prompts (chat template,
R1's per-domain instruction, the '<think>\\n' prefill) or R1-Zero's plain training template for base
models. TRL then gets plain-text prompts and returns plain-text completions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from distill.config import R1_ZERO_TEMPLATE, RLConfig
from distill.errors import DistillError
from distill.generation.prompts import build_messages, render_prompt, template_opens_think, user_text
from distill.problems import load_problems
from distill.records import Problem
from distill.rl.rewards import Completion, make_completion


@dataclass(frozen=True)
class PromptSet:
    problems: dict[str, Problem]
    rows: list[dict[str, Any]]   # {"prompt": text, "problem_id": id, "user": the user turn}
    prefilled_think: bool        # completions start inside an opened think block


def read_problems(path: Path | None) -> dict[str, Problem]:
    """The RL problems through the one reader (distill.problems: any Problem source), then RL's own checks:
    the source is set and not empty, and every math problem has the gold answer the accuracy reward needs."""
    if path is None:
        raise DistillError("rl.problems is not set: give the Problem JSONL to train on (e.g. data/demo/train.jsonl)")
    problems = load_problems(path, label="rl.problems", allow_empty=True)
    if not problems:
        raise DistillError(f"{path}: holds no problems (rl.problems)")
    unverifiable = [p.id for p in problems.values() if p.domain == "math" and p.answer is None]
    if unverifiable:
        raise DistillError(f"{path}: {len(unverifiable)} math problem(s) without a gold 'answer' (first: "
                           f"'{unverifiable[0]}'); the accuracy reward needs one for every problem")
    return problems


def check_problems(config: RLConfig) -> int:
    """The RL data read and checked before anything else (a dry run, a model load): the Problem file exists,
    every row is a Problem, there is at least one, each math problem has a gold answer. Returns the count.
    The reward names were checked when the config was made (RewardConfig)."""
    return len(read_problems(config.problems))


def build_prompts(problems: dict[str, Problem], tokenizer: Any, config: RLConfig) -> PromptSet:
    rows = []
    prefilled = False
    for problem in problems.values():
        user = user_text(problem, config.prompts)
        if config.template == "r1-zero":
            text = R1_ZERO_TEMPLATE.format(prompt=user)
        else:
            text = render_prompt(tokenizer, build_messages(problem, config.prompts), config.prompts)
            prefilled = config.prompts.prefill_think or template_opens_think(text)
        rows.append({"prompt": text, "problem_id": problem.id, "user": user})
    return PromptSet(problems, rows, prefilled)


def to_completions(prompts: PromptSet, problem_ids: list[str], users: list[str], texts: list[str],
                   token_counts: list[int], max_tokens: int) -> list[Completion]:
    return [make_completion(prompts.problems[pid], user, text, n, n >= max_tokens,
                            prefilled_think=prompts.prefilled_think)
            for pid, user, text, n in zip(problem_ids, users, texts, token_counts)]
