"""Math answers: the final \\boxed{} of the answer (or its final-answer phrase), checked against the gold
answer with math-verify (LaTeX and plain expressions, numeric and symbolic equivalence).

A multi-part answer boxed part by part ("$\\boxed{-2}$ and $\\boxed{1}$") is read as one answer, "-2, 1",
with math-verify's rule for which boxes belong together: the boxes that end the answer, each next to the
following one or separated from it by "and", "or", a comma or a semicolon. Two different values for a
one-value gold answer (a hedge) are then a pair, and a pair is not the gold value.

One verdict has one deadline (`timeout_s`): parsing the gold, parsing the answer and comparing them share
it, rather than each getting the whole timeout. The deadline is a SIGALRM timer, which only interrupts
Python bytecode; a caller that needs a *hard* bound (sympy stuck in C, a 10^(10^10) integer) runs this
inside `distill.pool.SupervisedPool`, which kills the process. `distill.verify.verify` does.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import re
import signal
import threading
from collections.abc import Iterator
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
# Boxes read as one answer: at most this many, joined when the text between two is shorter than
# NEAR_CHARS, or shorter than SEPARATED_CHARS and holds a separator (math-verify's rule).
MAX_JOINED_BOXES = 8
NEAR_CHARS = 10
SEPARATED_CHARS = 70
_SEPARATOR = re.compile(r"\b(?:and|or)\b|,|;")

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
# "The answer is X", "Final Answer: The final answer is X. I hope it is correct.", GSM8K's "#### X"
_FINAL_PHRASE = re.compile(r"(?:answer\s*(?:is\s*:?|:)|^\s*####)[ \t]*", re.IGNORECASE | re.MULTILINE)
_NESTED_PHRASE = re.compile(r"^(?:the\s+)?(?:final\s+)?answer\s*(?:is\s*:?|:)\s*", re.IGNORECASE)
# Where a phrase answer ends: a line end, a full stop before a space, a comma/semicolon before a word
# (not "and"/"or", which continue a list of values), or a clause that gives a reason.
_PHRASE_END = re.compile(r"\n|\.(?=\s|$)|[,;]\s+(?=(?!(?:and|or)\b)[A-Za-z]{2})|\s+(?:since|because|as|which|so)\b")
_INTEGER = re.compile(r"^[+-]?\d+$")
_RATIONAL = re.compile(r"(?P<sign>-)?\+?(?:\\frac\{(?P<num>\d+)\}\{(?P<den>\d+)\}|(?P<dec>\d{1,15}(?:\.\d{1,6})?))")
_SPACING = re.compile(r"\\[,;:! ]|\\left|\\right|(?<!,)\s+")
# "58,500" is a number to math-verify and "58, 500" a pair: keep that difference visible.
_COMMA_SPACE = re.compile(r",\s+")


def _boxes(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, content) of each \\boxed{...} (or \\fbox{...}, or `\\boxed 5`) from the last one back,
    braces balanced; an unbalanced box is skipped, at most MAX_BOX_TRIES boxes are looked at."""
    starts = [(m.start(), m.end()) for m in _BOXED.finditer(text)]
    for start, inner in reversed(starts[-MAX_BOX_TRIES:]):
        if inner < len(text) and text[inner] == "{":
            depth = 0
            for i in range(inner, len(text)):
                if text[i] == "{":
                    depth += 1
                elif text[i] == "}":
                    depth -= 1
                    if depth == 0:
                        yield start, i + 1, text[inner + 1:i].strip()
                        break
            continue  # unbalanced: try an earlier box
        bare = re.match(r"[^\s$.,]+", text[inner:])
        if bare:
            yield start, inner + bare.end(), bare.group(0)


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}, or `\\boxed 5`), braces balanced; None if absent."""
    return next((content for _, _, content in _boxes(text)), None)


def final_boxed(text: str) -> str | None:
    """The boxes that end the answer, read as one answer ("a, b"), or None when there is no box.

    Going back from the last box, an earlier box joins when the text between them is short, or a little
    longer with "and"/"or"/a comma/a semicolon in it and a different content (math-verify's rule); the same
    value boxed twice in a row counts once."""
    parts: list[str] = []
    after = None  # start of the box joined last
    for start, end, content in _iter_all_boxes(text):
        if after is not None:
            between = text[end:after]
            near = len(between) < NEAR_CHARS
            separated = len(between) < SEPARATED_CHARS and _SEPARATOR.search(between) and content != parts[-1]
            if not (near or separated) or len(parts) >= MAX_JOINED_BOXES:
                break
        if not parts or parts[-1] != content:
            parts.append(content)
        after = start
    return ", ".join(reversed(parts)) if parts else None


def _iter_all_boxes(text: str) -> Iterator[tuple[int, int, str]]:
    """Every balanced box from the last back (the last one found as `last_boxed` finds it)."""
    end_at = len(text)
    for _ in range(MAX_JOINED_BOXES + MAX_BOX_TRIES):
        found = next(_boxes(text[:end_at]), None)
        if found is None:
            return
        yield found
        end_at = found[0]


def phrase_answer(text: str) -> str | None:
    """What follows the last "answer is" / "answer:" / "####", up to the end of its sentence, without
    a repeated "The final answer is", markdown bold or dollar signs."""
    phrases = list(_FINAL_PHRASE.finditer(text))
    if not phrases:
        return None
    rest = text[phrases[-1].end():]
    while (nested := _NESTED_PHRASE.match(rest)) is not None:
        rest = rest[nested.end():]
    rest = rest.lstrip(" *_")
    if rest.startswith("$"):  # inline math holds its own commas and full stops
        math_end = rest.find("$", 1)
        answer = rest[1:math_end] if math_end != -1 else rest[1:].split("\n", 1)[0]
    else:
        cut = _PHRASE_END.search(rest)
        answer = rest[:cut.start()] if cut else rest
    answer = answer.strip().strip("*_").strip().strip("$").strip()
    return answer.rstrip(".").strip() or None


def final_answer_text(answer_text: str) -> str | None:
    """The answer as written: the final boxes, else the last 'the answer is X' phrase."""
    boxed = final_boxed(answer_text)
    if boxed is not None:
        return boxed
    return phrase_answer(answer_text[-UNBOXED_TAIL_CHARS:])


def _squash(latex: str) -> str:
    text = _COMMA_SPACE.sub(", ", latex)
    text = _SPACING.sub("", text).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return text.strip("$").rstrip(".")


class VerdictTimeout(BaseException):
    """The verdict's deadline passed. A BaseException, so that math-verify's and sympy's own
    `except Exception` blocks cannot swallow it and carry on past the deadline."""


@contextlib.contextmanager
def deadline(timeout_s: float) -> Iterator[None]:
    """One SIGALRM timer for everything inside; VerdictTimeout when it fires. Signals reach only the
    main thread: elsewhere there is no timer, and the caller bounds the time (a SupervisedPool)."""
    if threading.current_thread() is not threading.main_thread() or timeout_s <= 0:
        yield
        return

    def expire(signum, frame):
        raise VerdictTimeout

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@functools.lru_cache(maxsize=4096)
def parse_gold(gold: str) -> list:
    """Gold answers repeat across the n samples of a problem: parse each once per process."""
    from math_verify import parse  # sympy + antlr: ~1 s to import, so only where it is used

    # No timeout of math-verify's own: the verdict's deadline covers this call.
    return parse(f"${gold}$", parsing_timeout=None) or parse(gold, parsing_timeout=None)


def parse_answer(extracted: str) -> list:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    configs = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    return parse(f"\\boxed{{{extracted}}}", extraction_config=configs, parsing_timeout=None)


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
    try:
        with deadline(timeout_s):
            gold_parsed = parse_gold(gold)
            answer_parsed = parse_answer(extracted)
            if not answer_parsed:
                return False, f"could not parse the final answer {extracted[:80]!r}", extracted
            if not gold_parsed:
                return False, f"gold answer {gold[:80]!r} could not be parsed and differs as a string", extracted
            from math_verify import verify as mv_verify

            passed = mv_verify(gold_parsed, answer_parsed, timeout_seconds=None)
    except VerdictTimeout:
        return False, f"no verdict within {timeout_s:g} s (parsing and comparing together)", extracted
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
    try:
        with deadline(timeout_s):
            return normalize(parse_answer(extracted), extracted)
    except VerdictTimeout:
        return _squash(extracted)
