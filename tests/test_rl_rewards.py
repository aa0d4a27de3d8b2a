"""Each reward on hand-written completions, and the pool's bounds on hostile ones."""
from __future__ import annotations

import time

import pytest

from distill.config import SandboxConfig
from distill.errors import DistillError
from distill.records import Problem
from distill.rl.rewards import (
    RewardScorer,
    RewardSettings,
    accuracy,
    format_,
    get_reward,
    language,
    length_rewards,
    make_completion,
    overlong,
    resolve_custom,
    reward,
)

MATH = Problem(id="m1", problem="What is 6 times 7?", domain="math", answer="42")
CODE = Problem(id="c1", problem="Write add(a, b).", domain="code", entry_point="add",
               tests="def check(f):\n    assert f(2, 3) == 5\ncheck(add)\n")
S = RewardSettings(sandbox=SandboxConfig(timeout_s=3), max_completion_length=100, overlong_buffer=20)


def done(text: str, problem: Problem = MATH, tokens: int = 30, truncated: bool = False, prefilled: bool = True):
    return make_completion(problem, problem.problem, text, tokens, truncated, prefilled_think=prefilled)


@reward("mentions_six")
def mentions_six(completion) -> float:
    return float("6" in completion.reasoning)


@reward("sleeps_forever", timeout_s=1)
def sleeps_forever(completion) -> float:
    time.sleep(3600)
    return 1.0


def test_accuracy_right_and_wrong():
    assert accuracy(done("6 x 7 = 42\n</think>\n\nThe answer is \\boxed{42}."), S) == 1.0
    assert accuracy(done("6 x 7 = 48\n</think>\n\nThe answer is \\boxed{48}."), S) == 0.0
    assert accuracy(done("6 x 7 = 42 and then I ran out", truncated=True), S) == 0.0


def test_format_wants_one_think_block_then_an_answer():
    assert format_(done("six sevens\n</think>\n\n\\boxed{42}"), S) == 1.0
    assert format_(done("\\boxed{42}"), S) == 0.0  # no closing tag: all reasoning, no answer
    assert format_(done("no think at all. \\boxed{42}", prefilled=False), S) == 0.0
    assert format_(done("a\n</think>\nb\n</think>\n\\boxed{42}"), S) == 0.0  # two blocks
    assert format_(done("reasoning\n</think>\n\n"), S) == 0.0  # nothing after it


def test_format_with_the_r1_zero_answer_tags():
    zero = RewardSettings(answer_tag=True)
    tagged = done("<think> 6*7 = 42 </think> <answer> 42 </answer>", prefilled=False)
    assert tagged.answer == "42" and format_(tagged, zero) == 1.0 and accuracy(tagged, zero) == 1.0
    assert format_(done("<think> 6*7 </think> 42", prefilled=False), zero) == 0.0


def test_language_consistency_is_the_share_in_the_prompts_script():
    assert language(done("Six times seven is forty-two.\n</think>\n42"), S) == 1.0
    mixed = language(done("Six times seven 六乘以七等于四十二 is 42.\n</think>\n42"), S)
    assert 0.3 < mixed < 0.9
    assert language(done("六乘以七等于四十二\n</think>\n42"), S) == 0.0


def test_overlong_ramps_over_the_buffer():
    assert overlong(done("x\n</think>\n42", tokens=50), S) == 0.0
    assert overlong(done("x\n</think>\n42", tokens=90), S) == pytest.approx(-0.5)
    assert overlong(done("x", tokens=100, truncated=True), S) == -1.0


def test_length_reward_favours_short_right_answers():
    values = length_rewards([10, 20, 30], [True, True, False])
    assert values == [0.5, 0.0, -0.5]
    assert length_rewards([10, 10], [True, False]) == [0.0, 0.0]


def test_custom_rewards_by_name_and_module_path():
    assert get_reward("mentions_six") is mentions_six
    assert get_reward("tests.test_rl_rewards:mentions_six").__qualname__ == "mentions_six"
    with pytest.raises(DistillError, match="unknown reward 'nope'"):
        resolve_custom(["accuracy", "nope"])


def test_scorer_runs_every_reward_in_the_pool_in_order():
    completions = [done("6*7 = 42\n</think>\n\n\\boxed{42}", tokens=10),
                   done("6*7 = 40\n</think>\n\n\\boxed{40}", tokens=20)]
    names = ["accuracy", "format", "mentions_six", "length"]
    with RewardScorer(names, RewardSettings(custom=resolve_custom(names)), workers=1) as scorer:
        scores = scorer.score(completions, group_size=2)
    assert scores == {"accuracy": [1.0, 0.0], "format": [1.0, 1.0], "mentions_six": [1.0, 1.0],
                      "length": [0.5, -0.5]}


def test_hostile_completions_get_zero_and_the_batch_finishes():
    """An infinite loop and a fork bomb in the sandbox, and a reward that hangs: zero each, within bounds."""
    loop = done("loop\n</think>\n```python\ndef add(a, b):\n    while True:\n        pass\n```", CODE)
    bomb = done("bomb\n</think>\n```python\nimport os\ndef add(a, b):\n    while True:\n        os.fork()\n"
                "add(1, 2)\n```", CODE)
    good = done("easy\n</think>\n```python\ndef add(a, b):\n    return a + b\n```", CODE)
    names = ["accuracy", "sleeps_forever"]
    started = time.monotonic()
    with RewardScorer(names, RewardSettings(sandbox=SandboxConfig(timeout_s=2, max_processes=16),
                                      custom=resolve_custom(names)), workers=2) as scorer:
        scores = scorer.score([loop, bomb, good], group_size=3)
    assert scores["accuracy"] == [0.0, 0.0, 1.0]
    assert scores["sleeps_forever"] == [0.0, 0.0, 0.0]
    assert time.monotonic() - started < 60
