"""The demo says what its gain is made of: answering at all (format) against accuracy given an answer."""
from __future__ import annotations

import pytest

from distill.demo import describe_gain, gain_breakdown


def scores(pass1: float, no_answer: float) -> dict:
    return {"pass@1": {"value": pass1}, "no_answer_frac": no_answer, "truncated_frac": 0.0}


def test_the_two_parts_add_up_to_the_difference():
    base, student = scores(0.10, 0.60), scores(0.30, 0.20)  # answered 0.4 -> 0.8, right|answered 0.25 -> 0.375
    gain = gain_breakdown(base, student)
    assert gain["answered"] == {"base": 0.4, "student": 0.8}
    assert gain["accuracy_given_answer"] == {"base": 0.25, "student": 0.375}
    assert gain["from_format"] == pytest.approx(0.4 * 0.3125) and gain["from_accuracy"] == pytest.approx(0.125 * 0.6)
    assert gain["from_format"] + gain["from_accuracy"] == pytest.approx(0.30 - 0.10)
    assert "+0.125 from answering more (format)" in describe_gain(gain)


def test_a_base_that_never_answers_gains_only_through_format():
    gain = gain_breakdown(scores(0.0, 1.0), scores(0.2, 0.5))
    assert gain["from_format"] == pytest.approx(0.2) and gain["from_accuracy"] == 0.0
