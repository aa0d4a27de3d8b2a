"""Multiple choice: find the letter the answer settled on and compare it with the gold letter."""
from __future__ import annotations

import re
import string

from distill.records import Problem
from distill.verify.math import final_boxed

CHECK = "mcq_letter"

_WRAPPERS = re.compile(r"\\text\{|\\textbf\{|\\mathrm\{|[{}()\[\]$*.:\s]")
_PHRASE = re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*[:\-]?\s*\**\(?([A-Z])\)?(?![A-Za-z])", re.IGNORECASE)
_STANDALONE = re.compile(r"(?<![A-Za-z])\(([A-Z])\)(?![A-Za-z])")


def letters(problem: Problem) -> str:
    n = len(problem.choices) if problem.choices else 26
    return string.ascii_uppercase[:n]


def _as_letter(text: str, problem: Problem) -> str | None:
    """'B', '(B)', '\\text{B}', 'B) 42', or the text of a choice -> its letter."""
    valid = letters(problem)
    squashed = _WRAPPERS.sub("", text)
    if len(squashed) == 1 and squashed.upper() in valid:
        return squashed.upper()
    lead = re.match(r"\s*\(?([A-Z])[).:]\s", text + " ")
    if lead and lead.group(1) in valid:
        return lead.group(1)
    for letter, choice in zip(valid, problem.choices or []):
        if _WRAPPERS.sub("", choice).lower() == squashed.lower() and squashed:
            return letter
    return None


def extract_letter(problem: Problem, answer_text: str) -> str | None:
    """The chosen letter: the final boxes (as math reads them: two letters boxed as a hedge are no choice),
    else the last 'answer is (X)', else the last '(X)'."""
    boxed = final_boxed(answer_text)
    if boxed is not None:
        return _as_letter(boxed, problem)
    valid = letters(problem)
    for pattern in (_PHRASE, _STANDALONE):
        found = [m.upper() for m in pattern.findall(answer_text) if m.upper() in valid]
        if found:
            return found[-1]
    return None


def gold_letter(problem: Problem) -> str | None:
    return _as_letter(problem.answer, problem) if problem.answer else None


def check_mcq(problem: Problem, answer_text: str) -> tuple[bool, str, str | None]:
    gold = gold_letter(problem)
    if gold is None:
        return False, f"gold answer {problem.answer!r} is not one of the letters {letters(problem)}", None
    chosen = extract_letter(problem, answer_text)
    if chosen is None:
        return False, "no answer letter found", None
    if chosen != gold:
        return False, f"chose {chosen}, gold is {gold}", chosen
    return True, f"chose {chosen}", chosen
