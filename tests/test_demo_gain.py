"""The demo says what its gain is made of: answering at all (format) against accuracy given an answer."""
from __future__ import annotations

import pytest

from distill.demo import describe_gain, gain_breakdown


def scores(pass1: float, no_answer: float, samples: int = 100) -> dict:
    return {"pass@1": {"value": pass1}, "no_answer_frac": no_answer, "truncated_frac": 0.0, "samples": samples}


def test_the_two_parts_add_up_to_the_difference():
    base, student = scores(0.10, 0.60), scores(0.30, 0.20)  # answered 0.4 -> 0.8, right|answered 0.25 -> 0.375
    gain = gain_breakdown(base, student)
    assert gain["answered"] == {"base": 0.4, "student": 0.8}
    assert gain["accuracy_given_answer"] == {"base": 0.25, "student": 0.375}
    assert gain["from_format"] == pytest.approx(0.4 * 0.3125) and gain["from_accuracy"] == pytest.approx(0.125 * 0.6)
    assert gain["from_format"] + gain["from_accuracy"] == pytest.approx(0.30 - 0.10)
    text = describe_gain(gain)
    assert "+0.125 from answering more (format)" in text and max(map(len, text.splitlines())) <= 80


def test_a_base_that_never_answers_gains_only_through_format():
    gain = gain_breakdown(scores(0.0, 1.0), scores(0.2, 0.5))
    assert gain["from_format"] == pytest.approx(0.2) and gain["from_accuracy"] is None and not gain["split"]


def test_one_answer_in_128_is_too_few_to_split_on():
    """The Gemma demo's base: 1 answer in 128 samples, wrong; "0% right when answering" would be one sample."""
    gain = gain_breakdown(scores(0.0, 0.9922, samples=128), scores(0.4922, 0.0234, samples=128))
    assert gain["answers"] == {"base": 1, "student": 125} and gain["accuracy_given_answer"]["base"] is None
    assert gain["accuracy_given_answer"]["student"] == pytest.approx(0.504, abs=1e-3)
    assert not gain["split"] and gain["from_format"] == pytest.approx(0.4922)
    text = describe_gain(gain)
    assert "the base gave 1 answer (< 10)" in text and "base n/a" in text
    assert max(map(len, text.splitlines())) <= 80, text
