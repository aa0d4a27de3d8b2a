"""Rule-based rewards for GRPO, from the same verifiers and checks as the filter and evaluation.

    accuracy   1 when `distill.verify` accepts the answer (math-verify, the code sandbox, the mcq letter)
    format     1 for one closed, non-empty think block followed by an answer (R1-Zero template: the whole
               answer in <answer></answer>); the block must open the completion: with `<think>` first
               (nothing but whitespace before it) unless the prompt prefilled it, as open-r1 and TRL score
    language   share of the chain of thought's letters in the prompt's scripts (R1's consistency reward)
    overlong   DAPO's soft overlong penalty: 0, ramping to -1 over the last `overlong_buffer` tokens
    length     Kimi k1.5's length reward, per group: shorter than the group's mean length earns up to +0.5
               (wrong answers only lose)

Custom rewards use the filter's registry mechanism (`distill.filter.registry`): a decorator, a
`module:function` name in the recipe, or an entry point of the `distill.checks` group:

    from distill.rl import reward

    @reward("brevity", timeout_s=5)
    def brevity(completion):            # a Completion; return a float
        return -len(completion.text) / 1000

Every reward of a completion runs in a worker of a `distill.pool` pool (the filter's and eval's too), each
reward as its own time-bounded phase: a hung, crashing or hostile completion costs that reward a zero, never
the step. The RewardSettings come bound to `run_task`, once per worker. This module imports no torch: the pool's
forkserver preloads it.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Self

from distill import checks
from distill.chat_format import THINK_CLOSE, THINK_OPEN
from distill.config import QualityConfig, SandboxConfig
from distill.generation.extract import split_completion
from distill.plugins import BUILTIN_REWARDS as BUILTIN
from distill.plugins import REWARDS, timeout_of
from distill.pool import Failure, Retry, open_pool, phase
from distill.records import Problem, Trace
from distill.verify import PRELOAD as VERIFY_PRELOAD
from distill.verify import verify_budget_s, verify_inline

GROUP_REWARDS = ("length",)  # need the whole group: computed in the parent after the per-completion ones
PRELOAD = [*VERIFY_PRELOAD, "distill.rl.rewards"]
DEFAULT_REWARD_TIMEOUT_S = 30.0
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
# R1-Zero: everything after </think> is one <answer> block (whitespace around it allowed).
_WHOLE_ANSWER_TAG = re.compile(r"\s*<answer>(?:(?!</?answer>).)*?</answer>\s*", re.DOTALL)

@dataclass(frozen=True)
class Completion:
    """One sampled completion as a reward sees it."""

    problem: Problem
    prompt: str            # the user turn (its language is the target of the language reward)
    text: str              # the raw completion (after any '<think>\n' prefill)
    reasoning: str
    answer: str            # after </think>; for the R1-Zero template, inside <answer></answer> when present
    tokens: int
    truncated: bool
    answer_tagged: bool = False  # the answer came wrapped in <answer> tags
    prefilled_think: bool = False  # the prompt opened the think block: the text starts inside it

    def as_trace(self) -> Trace:
        """The filter's Trace view, so its checks apply unchanged."""
        return Trace(problem_id=self.problem.id, sample=0, teacher="policy",
                     prompt=[{"role": "user", "content": self.prompt}], completion=self.text,
                     reasoning=self.reasoning, answer=self.answer,
                     finish_reason="length" if self.truncated else "stop", completion_tokens=self.tokens)


def make_completion(problem: Problem, prompt: str, text: str, tokens: int, truncated: bool, *,
                    prefilled_think: bool) -> Completion:
    split = split_completion(text, prefilled_think=prefilled_think, reasoning_content=None, fmt="think")
    answer, tagged = split.answer, False
    if (match := _ANSWER_TAG.search(answer)) is not None:
        answer, tagged = match.group(1).strip(), True
    return Completion(problem, prompt, text, split.reasoning, answer, tokens, truncated, tagged, prefilled_think)


# ------------------------------------------------------------------------------------- registry
def reward(name: str, *, timeout_s: float = DEFAULT_REWARD_TIMEOUT_S):
    """Register `fn(completion: Completion) -> float` as a reward named `name` (see the module docstring)."""
    if name in BUILTIN:
        raise ValueError(f"@reward({name!r}): a built-in reward has that name; pick another")
    return REWARDS.register(name, timeout_s)


def get_reward(name: str) -> Callable[[Completion], float]:
    return REWARDS.lookup(name)


# ------------------------------------------------------------------------------------ built-ins
@dataclass(frozen=True)
class RewardSettings:
    """What the workers need: verifier bounds, the template's answer format, custom rewards."""

    math_timeout_s: float = 5.0
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    answer_tag: bool = False         # R1-Zero template: the format reward wants <answer>...</answer>
    max_completion_length: int = 1024
    overlong_buffer: int = 128
    custom: tuple[tuple[str, Callable], ...] = ()


def accuracy(c: Completion, s: RewardSettings) -> float:
    if c.truncated and not c.answer:
        return 0.0
    text = c.answer
    if c.answer_tagged and c.problem.domain in ("math", "mcq") and "\\boxed" not in text:
        text = f"\\boxed{{{text}}}"  # the <answer> tag is the final answer, as \\boxed{} is elsewhere
    return float(verify_inline(c.problem, text, math_timeout_s=s.math_timeout_s, sandbox=s.sandbox).passed)


def format_(c: Completion, s: RewardSettings) -> float:
    if not checks.think_format(c.as_trace(), c.problem, QualityConfig()).passed:
        return 0.0
    # The splitter is lenient (a lone </think> or text before <think> still splits), the reward is not:
    # without a prefill the completion must open the block itself, and with one it must not open another.
    opens = c.text.count(THINK_OPEN)
    if c.prefilled_think and opens:
        return 0.0
    if not c.prefilled_think and (opens != 1 or not c.text.lstrip().startswith(THINK_OPEN)):
        return 0.0
    if not s.answer_tag:
        return 1.0
    after = c.text[c.text.index(THINK_CLOSE) + len(THINK_CLOSE):]
    return float(_WHOLE_ANSWER_TAG.fullmatch(after) is not None)


def language(c: Completion, s: RewardSettings) -> float:
    """1 - the share of the reasoning's letters in scripts the prompt does not use (the filter's lang_mix)."""
    share = checks.lang_mix(c.as_trace(), c.problem, QualityConfig(max_lang_mix=1.0)).score or 0.0
    return round(1.0 - float(share), 4)


def overlong(c: Completion, s: RewardSettings) -> float:
    """DAPO (Yu et al. 2025, eq. 13): soft punishment over the last `overlong_buffer` tokens before the limit."""
    limit, buffer = s.max_completion_length, s.overlong_buffer
    if c.truncated or c.tokens >= limit:
        return -1.0
    if buffer <= 0 or c.tokens <= limit - buffer:
        return 0.0
    return (limit - buffer - c.tokens) / buffer


PER_COMPLETION: dict[str, Callable[[Completion, RewardSettings], float]] = {
    "accuracy": accuracy, "format": format_, "language": language, "overlong": overlong}


def length_rewards(lengths: list[int], correct: list[bool]) -> list[float]:
    """Kimi k1.5 (2025, sec. 2.3.3) for one group: lambda = 0.5 - (len - min) / (max - min); correct answers
    get lambda, wrong ones min(0, lambda). All equal lengths: 0."""
    low, high = min(lengths), max(lengths)
    if high == low:
        return [0.0] * len(lengths)
    out = []
    for n, ok in zip(lengths, correct):
        lam = 0.5 - (n - low) / (high - low)
        out.append(lam if ok else min(0.0, lam))
    return out


# --------------------------------------------------------------------------------- worker side
def budget_s(name: str, c: Completion, s: RewardSettings) -> float:
    if name == "accuracy":
        return verify_budget_s(c.problem, s.math_timeout_s, s.sandbox)
    if name in PER_COMPLETION:
        return 30.0  # linear-time text checks; this only catches a pathological regex
    return timeout_of(dict(s.custom)[name])


def run_task(task: tuple, settings: RewardSettings) -> dict[str, float]:
    """Pool entry: (completion fields, names, skipped) -> {reward name: value}; a skipped reward is 0."""
    data, names, skipped = task
    s = settings
    c = Completion(**{**data, "problem": Problem.model_validate(data["problem"])})
    custom = dict(s.custom)
    values: dict[str, float] = {}
    for name in names:
        if name in skipped:
            values[name] = 0.0
            continue
        phase(name, budget_s(name, c, s))
        try:
            value = PER_COMPLETION[name](c, s) if name in PER_COMPLETION else custom[name](c)
            values[name] = float(value)
        except Exception:  # noqa: BLE001 - a buggy reward costs this completion that reward, not the run
            values[name] = 0.0
    return values


def _on_failure(task: tuple, failure: Failure) -> Any:
    """A reward overran its budget or killed its worker: retry the completion with that reward at 0."""
    data, names, skipped = task
    if failure.phase in names and failure.phase not in skipped:
        return Retry((data, names, {*skipped, failure.phase}))
    return {name: 0.0 for name in names}  # the worker died outside any reward phase


# --------------------------------------------------------------------------------- parent side
class RewardScorer:
    """Scores batches of completions on a long-lived pool; one call per batch for every reward."""

    def __init__(self, names: Iterable[str], settings: RewardSettings, workers: int = 0):
        self.names = list(names)
        self.pool_names = [n for n in self.names if n not in GROUP_REWARDS]
        if "length" in self.names and "accuracy" not in self.pool_names:
            self.pool_names.append("accuracy")  # the length reward needs correctness
        self.settings = settings
        self.pool = open_pool(partial(run_task, settings=settings), workers=workers, preload=PRELOAD, batch=4)
        self.evaluations = 0  # reward-function calls, for the reward evaluations/s figure

    def score(self, completions: list[Completion], group_size: int) -> dict[str, list[float]]:
        tasks = ((_fields(c), self.pool_names, frozenset()) for c in completions)
        rows = list(self.pool.imap(tasks, _on_failure))
        self.evaluations += len(rows) * len(self.pool_names)
        columns = {name: [row[name] for row in rows] for name in self.pool_names}
        if "length" in self.names:
            columns["length"] = []
            for start in range(0, len(completions), group_size):
                group = completions[start:start + group_size]
                correct = [v > 0 for v in columns["accuracy"][start:start + group_size]]
                columns["length"] += length_rewards([c.tokens for c in group], correct)
        return {name: columns[name] for name in self.names}

    def close(self) -> None:
        self.pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fields(c: Completion) -> dict[str, Any]:
    data = asdict(c)
    data["problem"] = c.problem.to_json()
    return data


def resolve_custom(names: Iterable[str]) -> tuple[tuple[str, Callable], ...]:
    """The non-built-in rewards of a recipe, looked up by name now so a typo fails before any training."""
    return tuple((name, get_reward(name)) for name in names if name not in BUILTIN)
