"""Math answers: the last \\boxed{} of the answer (or its final-answer phrase), checked against the gold
answer with math-verify (LaTeX and plain expressions, numeric and symbolic equivalence).

Everything here runs in-process and relies on math-verify's SIGALRM timeouts, which only interrupt
Python bytecode; a caller that needs a *hard* bound (sympy stuck in C, a 10^(10^10) integer) runs this
inside `distill.verify.workers.SupervisedPool`, which kills the process. `distill.verify.verify` does.
"""
from __future__ import annotations

import functools
import logging
import math
import re
import threading
from fractions import Fraction

from distill.verify import numeric

CHECK = "math_verify"
# math-verify logs every timeout as a warning; the verdict's detail already says so.
logging.getLogger("math_verify").setLevel(logging.ERROR)
# A final answer is short; a longer "answer" is a model that dumped its work into the box. Past this
# many characters (or 20x the gold's length) we reject without handing it to the parser.
MIN_ANSWER_CHARS_LIMIT = 1000
# Where to look for "the answer is ..." when there is no \boxed{}: answers end with it.
UNBOXED_TAIL_CHARS = 4000
# Unbalanced boxes are skipped back to an earlier one, but only this many: each try scans to the end.
MAX_BOX_TRIES = 4

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_FINAL_PHRASE = re.compile(r"(?:answer\s*(?:is|:)|^####)\s*\$?([^\n$]+?)\$?\s*\.?\s*$", re.IGNORECASE | re.MULTILINE)
_INTEGER = re.compile(r"^[+-]?\d+$")
_RATIONAL = re.compile(r"(?P<sign>-)?\+?(?:\\frac\{(?P<num>\d+)\}\{(?P<den>\d+)\}|(?P<dec>\d{1,15}(?:\.\d{1,6})?))")
_SPACING = re.compile(r"\\[,;:! ]|\\left|\\right|(?<!,)\s+")
# "58,500" is a number to math-verify and "58, 500" a pair: keep that difference visible.
_COMMA_SPACE = re.compile(r",\s+")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}, or `\\boxed 5`), braces balanced; None if absent."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts[-MAX_BOX_TRIES:]):
        if start < len(text) and text[start] == "{":
            depth = 0
            for i in range(start, len(text)):
                if text[i] == "{":
                    depth += 1
                elif text[i] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[start + 1:i].strip()
            continue  # unbalanced: try an earlier box
        bare = re.match(r"[^\s$.,]+", text[start:])
        if bare:
            return bare.group(0)
    return None


def final_answer_text(answer_text: str) -> str | None:
    """The answer as written: the last box, else the last 'the answer is X' phrase."""
    boxed = last_boxed(answer_text)
    if boxed is not None:
        return boxed
    phrases = _FINAL_PHRASE.findall(answer_text[-UNBOXED_TAIL_CHARS:])
    return phrases[-1].strip() if phrases else None


def _squash(latex: str) -> str:
    text = _COMMA_SPACE.sub(", ", latex)
    text = _SPACING.sub("", text).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return text.strip("$").rstrip(".")


def _alarm_seconds(timeout_s: float) -> int | None:
    """math-verify's SIGALRM timeouts work only on the main thread; elsewhere the caller bounds time."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return max(1, math.ceil(timeout_s))


@functools.lru_cache(maxsize=4096)
def parse_gold(gold: str, timeout_s: int | None) -> list:
    """Gold answers repeat across the n samples of a problem: parse each once per process."""
    from math_verify import parse  # sympy + antlr: ~1 s to import, so only where it is used

    return parse(f"${gold}$", parsing_timeout=timeout_s) or parse(gold, parsing_timeout=timeout_s)


def parse_answer(extracted: str, timeout_s: int | None) -> list:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    configs = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    return parse(f"\\boxed{{{extracted}}}", extraction_config=configs, parsing_timeout=timeout_s)


def normalize(parsed: list, extracted: str | None) -> str | None:
    """A canonical string so equivalent answers vote together (1/2, 0.5, \\frac{1}{2} -> '1/2')."""
    if parsed and not isinstance(parsed[0], str):
        expr = parsed[0]
        try:
            if getattr(expr, "is_Rational", False):
                return str(expr)
            if getattr(expr, "is_Float", False):
                value = float(expr)
                near = Fraction(round(value, 6)).limit_denominator(1000)
                return str(near) if abs(float(near) - value) < 5e-7 else repr(round(value, 6))
            return str(expr)
        except (TypeError, ValueError, OverflowError):
            return str(expr)
    return _squash(extracted) if extracted else None


def check_math(gold: str, answer_text: str, timeout_s: float) -> tuple[bool, str, str | None]:
    """(passed, detail, extracted) for one answer against one gold answer."""
    extracted = final_answer_text(answer_text)
    if extracted is None:
        # No box and no "the answer is": we do not guess from the last number in the text, which would
        # keep traces that never committed to an answer.
        return False, "no final answer found (no \\boxed{} and no 'the answer is ...')", None
    limit = max(MIN_ANSWER_CHARS_LIMIT, 20 * len(gold))
    if len(extracted) > limit:
        return False, f"final answer is {len(extracted)} characters long (limit {limit})", extracted[:200]
    shortcut = _shortcut(gold, extracted)
    if shortcut is not None:
        return shortcut[0], shortcut[1], extracted
    seconds = _alarm_seconds(timeout_s)
    gold_parsed = parse_gold(gold, seconds)
    answer_parsed = parse_answer(extracted, seconds)
    if not answer_parsed:
        return False, f"could not parse the final answer {extracted[:80]!r}", extracted
    if not gold_parsed:
        return False, f"gold answer {gold[:80]!r} could not be parsed and differs as a string", extracted
    from math_verify import verify as mv_verify

    passed = mv_verify(gold_parsed, answer_parsed, timeout_seconds=seconds)
    return passed, "equivalent to the gold answer" if passed else _differs(extracted, gold), extracted


def _differs(extracted: str, gold: str) -> str:
    return f"{extracted[:80]!r} is not equivalent to gold {gold[:80]!r}"


def _rational(text: str) -> tuple[Fraction, bool] | None:
    """An integer, fraction or short decimal written plainly -> (exact value, written with a decimal point)."""
    match = _RATIONAL.fullmatch(text)
    if match is None:
        return None
    sign = -1 if match["sign"] else 1
    if match["num"] is not None:
        if int(match["den"]) == 0:
            return None
        return sign * Fraction(int(match["num"]), int(match["den"])), False
    return sign * Fraction(match["dec"]), "." in match["dec"]


def _shortcut(gold: str, extracted: str) -> tuple[bool, str] | None:
    """Decide without sympy when that is sound: same text, or two plain numbers.

    Integers and fractions compare exactly. A decimal only short-cuts to *equal*: math-verify rounds to 6
    places, so 0.333333 counts as 1/3 there, and an unequal decimal goes on to agree with it. Other numeric
    expressions are evaluated in floats (`distill.verify.numeric`), which decides only clear cases."""
    squashed_gold, squashed = _squash(gold), _squash(extracted)
    if squashed == squashed_gold:
        return True, "matches the gold answer"
    a, b = _rational(squashed), _rational(squashed_gold)
    if a is not None and b is not None:
        if a[0] == b[0]:
            return True, "equal to the gold answer"
        if not (a[1] or b[1]):
            return False, _differs(extracted, gold)
    same = numeric.compare(squashed_gold, squashed)
    if same is None:
        return None
    return same, "equal to the gold answer" if same else _differs(extracted, gold)


def normalized_answer(answer_text: str, timeout_s: float) -> str | None:
    """The final answer in canonical form (for majority votes), or None when there is none."""
    extracted = final_answer_text(answer_text)
    if extracted is None or len(extracted) > MIN_ANSWER_CHARS_LIMIT:
        return None
    if _INTEGER.match(_squash(extracted)):
        return str(int(_squash(extracted)))
    return normalize(parse_answer(extracted, _alarm_seconds(timeout_s)), extracted)
