"""RL rewards and the repetition check against the reference implementations' own published test cases
(open-r1 tests/test_rewards.py, TRL tests/test_rewards.py), ported as cases and run through distill's
rewards (`distill.rl.rewards`) and filter check (`distill.filter.checks.repetition`).

Each case carries the value its source's test expects; DELIBERATE lists the cases where distill decides
otherwise on purpose, with the reason (they must still differ). docs/parity.md gives the counts."""
from __future__ import annotations

import pytest

from distill.config import QualityConfig
from distill.filter.checks import repetition
from distill.records import Problem, Trace
from distill.rl.rewards import RewardSettings, format_, length_rewards, make_completion, overlong

OPENR1 = "open-r1 tests/test_rewards.py"
TRL = "TRL tests/test_rewards.py"
MATH = Problem(id="m", problem="q", domain="math", answer="42")


def fmt(text: str, *, answer_tag: bool) -> float:
    """The format reward with nothing prefilled, as the peers' completions are written."""
    return format_(make_completion(MATH, "q", text, 10, False, prefilled_think=False), RewardSettings(answer_tag=answer_tag))


# (source, id, completion, expected) for the format reward: open-r1's format_reward is R1-Zero's template
# (<think> then <answer>), TRL's think_format_reward is the think block alone.
FORMAT_CASES: list[tuple[str, str, str, bool, float]] = [
    (OPENR1, "format-correct", "<think>\nSome reasoning\n</think>\n<answer>\nThe answer\n</answer>", True, 1.0),
    (OPENR1, "format-correct-earlier", "<think>Some reasoning</think><answer>The answer</answer>", True, 1.0),
    (OPENR1, "format-only-thinking", "<think>Only thinking</think>", True, 0.0),
    (OPENR1, "format-only-answer", "<answer>Only answer</answer>", True, 0.0),
    (OPENR1, "format-no-tags", "No tags at all", True, 0.0),
    (OPENR1, "format-missing-closing", "<think>Missing closing</think><answer>Missing closing", True, 0.0),
    (OPENR1, "format-wrong-order", "<think>Wrong order</answer><answer>Wrong order</think>", True, 0.0),
    (OPENR1, "format-multiline", ("<think>\nI will count each distinct object in the image:\n1. Purple scooter\n"
     "2. Red bicycle\n3. Green motorcycle\n\nThere are 9 distinct objects in total.\n</think>\n<answer>\n9\n"
     "</answer>"), True, 1.0),
    *[(TRL, f"think-valid-{i}", text, False, 1.0) for i, text in enumerate([
        "<think>This is my reasoning.</think>This is my answer.",
        "<think>\nThis is my reasoning.\n</think>\nThis is my answer.",
        "<think>\nThis is\nmy reasoning.\n</think>\nThis is my answer.",
        "<think>\nThis is <some tag> my reasoning.</think>\nThis is my answer.",
        "<think></think>\nThis is my answer."])],
    *[(TRL, f"think-invalid-{i}", text, False, 0.0) for i, text in enumerate([
        "<think>\nThis is my reasoning.\nThis is my answer.",
        "<think>This is my reasoning.\nThis is my answer.",
        "This is my reasoning. This is my answer.",
        "This is my reasoning.\nThis is my answer.",
        "This is my reasoning.</think>\nThis is my answer.",
        "This is my reasoning.</think>This is my answer.",
        "This<think>is my reasoning.</think>\nThis is my answer.",
        "<think>This is<think>my reasoning.</think></think>This is my answer.",
        "<think>This is</think>\nmy\n<think>reasoning.</think>\nThis is my answer."])],
    (OPENR1, "zero-template-lone-close", "reasoning</think><answer>42</answer>", True, 0.0),
]

# (source, id, text, n, max_penalty, expected reward): open-r1's repetition penalty is
# max_penalty * (1 - distinct n-grams / n-grams), the share distill's repetition check measures.
REPETITION_CASES: list[tuple[str, str, str, int, float, float]] = [
    (OPENR1, "rep-none", "this is a test sentence", 2, -1.0, 0.0),
    (OPENR1, "rep-full", "this this this this this", 2, -1.0, -0.75),
    (OPENR1, "rep-partial", "this is a this is a test", 2, -1.0, -1 / 3),
    (OPENR1, "rep-multiple-0", "this is a test", 3, -0.5, 0.0),
    (OPENR1, "rep-multiple-1", "test test test test", 3, -0.5, -0.25),
    (OPENR1, "rep-empty", "", 2, -1.0, 0.0),
    (OPENR1, "rep-ngram-3", "this is a this is a test", 3, -2.0, -0.4),
    (OPENR1, "rep-mixed-case-0", "This is A Test", 2, -1.0, 0.0),
    (OPENR1, "rep-mixed-case-1", "this IS a test", 2, -1.0, 0.0),
    (OPENR1, "rep-one-word", "word", 3, -1.0, 0.0),
    (OPENR1, "rep-two-words", "two words", 3, -1.0, 0.0),
    (OPENR1, "rep-three-words", "three different words", 3, -1.0, 0.0),
    (OPENR1, "rep-three-word-repetition", "word word word word", 3, -1.0, -0.5),
    (OPENR1, "rep-four-words", "one two one two", 3, -1.0, 0.0),
    (OPENR1, "rep-five-words", "A B C A B", 3, -0.5, 0.0),
    (OPENR1, "rep-six-words", "A B C A B C", 3, -1.0, -0.25),
    (OPENR1, "rep-long", "A B C A B C E F G A B C A B C", 3, -1.0, -0.3846),
    (OPENR1, "rep-long-none", "A B C D E F G H I J K L", 3, -1.0, 0.0),
]

# (source, id, tokens, expected) with max_completion_len=100, soft_punish_cache=20 (both suites)
OVERLONG_CASES = [(src, f"overlong-{n}", n, v) for src in (OPENR1, TRL) for n, v in ((50, 0.0), (110, -1.0),
                                                                                    (90, -0.5))]

# open-r1's len_reward (Kimi k1.5) over one group: (id, lengths, correct, check on the rewards)
LENGTH_CASES = [
    (OPENR1, "len-same", [23, 23], [True, False], lambda r: r == [0.0, 0.0]),
    (OPENR1, "len-correct", [23, 35], [True, True], lambda r: r[0] > r[1] and r[0] == pytest.approx(0.5)),
    (OPENR1, "len-incorrect", [23, 35], [False, False], lambda r: r[0] <= 0 and r[1] <= 0 and r[0] > r[1]),
    (OPENR1, "len-mixed", [23, 35, 23, 35], [True, True, False, False],
     lambda r: r[0] > 0 and r[2] > r[1] and r[1] >= r[3] and r[2] <= 0 and r[3] <= 0 and r[0] > r[1] and r[2] > r[3]),
    # open-r1 counts an answer to an unparsable gold as correct; distill's accuracy says it is not
    (OPENR1, "len-unparsable-gold", [14, 25], [False, False], lambda r: r[0] == pytest.approx(0.5) and r[0] > r[1]),
]

DELIBERATE = {
    (TRL, "think-valid-4"): "An empty think block is not reasoning: distill's format reward (and the filter's "
                            "think_format check) want a non-empty one, as R1's rejection sampling does.",
    (OPENR1, "len-unparsable-gold"): "open-r1 treats every answer to an unparsable gold as correct for its length "
                                     "reward; distill's length reward takes correctness from its accuracy "
                                     "verdict, which is 0 there.",
}


def _deliberate(source: str, ident: str, agrees: bool) -> None:
    if (source, ident) in DELIBERATE:
        assert not agrees, f"no longer differs: {DELIBERATE[(source, ident)]}"
    else:
        assert agrees


@pytest.mark.parametrize("case", FORMAT_CASES, ids=[f"{c[0].split()[0]}:{c[1]}" for c in FORMAT_CASES])
def test_format_reward(case):
    source, ident, text, answer_tag, expected = case
    _deliberate(source, ident, fmt(text, answer_tag=answer_tag) == expected)


@pytest.mark.parametrize("case", REPETITION_CASES, ids=[c[1] for c in REPETITION_CASES])
def test_repetition_share_matches_the_repetition_penalty(case):
    source, ident, text, n, max_penalty, expected = case
    trace = Trace(problem_id="p", sample=0, teacher="t", prompt=[], completion=text, reasoning=text, answer="")
    share = repetition(trace, None, QualityConfig(repeat_ngram=n, max_repeat_frac=1.0)).score
    _deliberate(source, ident, round(share * max_penalty, 4) == pytest.approx(expected, abs=1e-4))


@pytest.mark.parametrize("case", OVERLONG_CASES, ids=[f"{c[0].split()[0]}:{c[1]}" for c in OVERLONG_CASES])
def test_soft_overlong_punishment(case):
    source, ident, tokens, expected = case
    completion = make_completion(MATH, "q", "x</think>42", tokens, tokens > 100, prefilled_think=True)
    value = overlong(completion, RewardSettings(max_completion_length=100, overlong_buffer=20))
    _deliberate(source, ident, value == pytest.approx(expected))


@pytest.mark.parametrize("case", LENGTH_CASES, ids=[c[1] for c in LENGTH_CASES])
def test_length_reward(case):
    source, ident, lengths, correct, check = case
    _deliberate(source, ident, bool(check(length_rewards(lengths, correct))))


def test_repetition_loops_in_unspaced_scripts_are_seen():
    """Chinese and Japanese put no spaces between words: each character counts as one, so a loop shows."""
    q = QualityConfig()
    loop = "我们再检查一次六乘以七等于四十二。" * 40
    kana = "もう一度確認します、六かける七は四十二です。" * 40
    for text in (loop, kana):
        trace = Trace(problem_id="p", sample=0, teacher="t", prompt=[], completion=text, reasoning=text, answer="")
        result = repetition(trace, None, q)
        assert not result.passed and result.score > 0.8
    varied = "首先计算六乘以七。六个七相加得到四十二。然后检查：四十二除以六等于七，所以答案正确。"
    trace = Trace(problem_id="p", sample=0, teacher="t", prompt=[], completion=varied, reasoning=varied, answer="")
    assert repetition(trace, None, q).passed
