"""A small evaluator for numeric LaTeX answers (`\\frac{\\sqrt{21}}{5}`, `2\\pi`, `3^{4}-1`), in floats.

math-verify turns LaTeX into sympy through an antlr parser written in Python: ~15 ms an answer. Most math
answers are plain numbers, and for those a float evaluation decides the comparison in microseconds,
with math-verify's own semantics (it compares numbers after rounding to 6 decimals): values within 1e-9
are equal, values further apart than 1e-4 (relative) are not, anything between goes to math-verify.

Anything outside this grammar (variables, %, degrees, \\pm, text, sets, tuples, commas, huge powers)
returns None, and math-verify decides.
"""
from __future__ import annotations

import math
import re

_TOKEN = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+|\\[a-zA-Z]+|\S)")
_SKIP = {"\\left", "\\right", "\\!", "\\,", "\\;", "\\:", "\\displaystyle"}
_FRAC = {"\\frac", "\\dfrac", "\\tfrac"}
_TIMES = {"*", "\\cdot", "\\times"}
MAX_CHARS = 200
MAX_MAGNITUDE = 1e100


class _NotNumeric(Exception):
    pass


class _Parser:
    """Recursive descent over: sum := term (('+'|'-') term)*; term := power ((*|/|implicit) power)*."""

    def __init__(self, text: str):
        tokens = []
        pos = 0
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if match is None:
                break
            pos = match.end()
            if match.group(1) not in _SKIP:
                tokens.append(match.group(1))
        if text[pos:].strip():
            raise _NotNumeric
        self.tokens = tokens
        self.i = 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise _NotNumeric
        self.i += 1
        return token

    def parse(self) -> float:
        value = self.sum()
        if self.peek() is not None:
            raise _NotNumeric
        return value

    def sum(self) -> float:
        value = self.term()
        while self.peek() in ("+", "-"):
            value = value + self.term() if self.take() == "+" else value - self.term()
        return value

    def term(self) -> float:
        value = self.unary()
        while True:
            token = self.peek()
            if token in _TIMES:
                self.take()
                value *= self.unary()
            elif token == "/":
                self.take()
                divisor = self.unary()
                if divisor == 0:
                    raise _NotNumeric
                value /= divisor
            elif token in ("(", "{", "\\pi", "\\sqrt") or token in _FRAC:
                value *= self.power()  # implicit multiplication: 2\sqrt{3}, 3\pi, 2(1+3); never "3 4"
            else:
                return value

    def unary(self) -> float:
        if self.peek() == "-":
            self.take()
            return -self.unary()
        if self.peek() == "+":
            self.take()
        return self.power()

    def power(self) -> float:
        base = self.atom()
        if self.peek() == "^":
            self.take()
            exponent = self.group() if self.peek() == "{" else self.digit()
            if abs(exponent) > 64 or (base == 0 and exponent < 0):
                raise _NotNumeric  # towers and huge powers are math-verify's (bounded) problem
            value = base ** exponent
            if isinstance(value, complex):
                raise _NotNumeric
            return value
        return base

    def digit(self) -> float:
        """One digit, as in `\\frac12` or `x^23` (= x^2 * 3); the rest of the number stays for what follows."""
        token = self.peek()
        if token is None or not token.isdigit():
            raise _NotNumeric
        if len(token) > 1:
            self.tokens[self.i] = token[1:]
            return float(token[0])
        self.i += 1
        return float(token)

    def group(self) -> float:
        self.take("{")
        value = self.sum()
        self.take("}")
        return value

    def atom(self) -> float:
        token = self.take()
        if token[0].isdigit() or token[0] == ".":
            return float(token)
        if token == "(":
            value = self.sum()
            self.take(")")
            return value
        if token == "{":
            self.i -= 1
            return self.group()
        if token == "\\pi":
            return math.pi
        if token in _FRAC:
            numerator = self.group() if self.peek() == "{" else self.digit()
            denominator = self.group() if self.peek() == "{" else self.digit()
            if denominator == 0:
                raise _NotNumeric
            return numerator / denominator
        if token == "\\sqrt":
            index = 2.0
            if self.peek() == "[":
                self.take("[")
                index = self.sum()
                self.take("]")
            radicand = self.group() if self.peek() == "{" else self.digit()
            if radicand < 0 or index == 0:
                raise _NotNumeric
            return radicand ** (1 / index)
        raise _NotNumeric


def evaluate(latex: str) -> float | None:
    """The value of a purely numeric LaTeX expression, or None when it is not one (or is out of range)."""
    if len(latex) > MAX_CHARS:
        return None
    try:
        value = _Parser(latex.strip().strip("$")).parse()
    except (_NotNumeric, OverflowError, ZeroDivisionError, ValueError):
        return None
    if not math.isfinite(value) or abs(value) > MAX_MAGNITUDE:
        return None
    return value


def compare(gold: str, answer: str) -> bool | None:
    """True/False when both are numbers that are clearly equal/unequal; None to let math-verify decide."""
    a, b = evaluate(answer), evaluate(gold)
    if a is None or b is None:
        return None
    scale = max(1.0, abs(b))
    if abs(a - b) <= 1e-9 * scale:
        return True
    if abs(a - b) > 1e-4 * scale:
        return False
    return None
