"""Math answers: the last \\boxed{} of the answer (or its final-answer phrase), checked against the gold
answer with math-verify (LaTeX and plain expressions, numeric and symbolic equivalence).

Everything here runs in-process and relies on math-verify's SIGALRM timeouts, which only interrupt
Python bytecode; a caller that needs a *hard* bound (sympy stuck in C, a 10^(10^10) integer) runs this
inside `distill.verify.workers.SupervisedPool`, which kills the process. `distill.verify.verify` does.
"""
from __future__ import annotations

import functools
import math
import re
import threading
from fractions import Fraction

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse
from math_verify import verify as mv_verify

CHECK = "math_verify"
# A final answer is short; a longer "answer" is a model that dumped its work into the box. Past this
# many characters (or 20x the gold's length) we reject without handing it to the parser.
MIN_ANSWER_CHARS_LIMIT = 1000
# math-verify sees at most this much of an answer that has no \boxed{} (the end is where answers are).
UNBOXED_TAIL_CHARS = 4000

_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
_FINAL_PHRASE = re.compile(r"(?:answer\s*(?:is|:)|^####)\s*\$?([^\n$]+?)\$?\s*\.?\s*$", re.I | re.M)
_INTEGER = re.compile(r"^[+-]?\d+$")
_SPACING = re.compile(r"\\[,;:! ]|\\left|\\right|\s+")


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}, or `\\boxed 5`), braces balanced; None if absent."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    for start in reversed(starts):
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
    text = _SPACING.sub("", latex).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return text.strip("$").rstrip(".")


def _alarm_seconds(timeout_s: float) -> int | None:
    """math-verify's SIGALRM timeouts work only on the main thread; elsewhere the caller bounds time."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return max(1, math.ceil(timeout_s))


@functools.lru_cache(maxsize=4096)
def parse_gold(gold: str, timeout_s: int | None) -> list:
    """Gold answers repeat across the n samples of a problem: parse each once per process."""
    return parse(f"${gold}$", parsing_timeout=timeout_s) or parse(gold, parsing_timeout=timeout_s)


def parse_answer(extracted: str | None, answer_text: str, timeout_s: int | None) -> list:
    configs = [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]
    if extracted is not None:
        return parse(f"\\boxed{{{extracted}}}", extraction_config=configs, parsing_timeout=timeout_s)
    return parse(answer_text[-UNBOXED_TAIL_CHARS:], extraction_config=configs, parsing_timeout=timeout_s)


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
    limit = max(MIN_ANSWER_CHARS_LIMIT, 20 * len(gold))
    if extracted is not None and len(extracted) > limit:
        return False, f"final answer is {len(extracted)} characters long (limit {limit})", extracted[:200]
    # Cheap and sound shortcuts: identical strings are equal; two plain integers compare exactly.
    if extracted is not None and _squash(extracted) == _squash(gold):
        return True, "matches the gold answer", extracted
    if extracted is not None and _INTEGER.match(_squash(extracted)) and _INTEGER.match(_squash(gold)):
        same = int(_squash(extracted)) == int(_squash(gold))
        detail = "matches the gold answer" if same else f"{_squash(extracted)} != gold {_squash(gold)}"
        return same, detail, extracted
    seconds = _alarm_seconds(timeout_s)
    gold_parsed = parse_gold(gold, seconds)
    answer_parsed = parse_answer(extracted, answer_text, seconds)
    if not answer_parsed:
        return False, "no final answer found (no \\boxed{} and no 'the answer is')" if extracted is None \
            else f"could not parse the final answer {extracted[:80]!r}", extracted
    if not gold_parsed:
        return False, f"gold answer {gold[:80]!r} could not be parsed and differs as a string", extracted
    passed = mv_verify(gold_parsed, answer_parsed, timeout_seconds=seconds)
    shown = extracted if extracted is not None else str(answer_parsed[-1])
    detail = "equivalent to the gold answer" if passed else f"{shown[:80]!r} is not equivalent to gold {gold[:80]!r}"
    return passed, detail, extracted


def normalized_answer(answer_text: str, timeout_s: float) -> str | None:
    """The final answer in canonical form (for majority votes), or None when there is none."""
    extracted = final_answer_text(answer_text)
    if extracted is not None and len(extracted) > MIN_ANSWER_CHARS_LIMIT:
        return None
    if extracted is not None and _INTEGER.match(_squash(extracted)):
        return str(int(_squash(extracted)))
    return normalize(parse_answer(extracted, answer_text, _alarm_seconds(timeout_s)), extracted)
