"""Imported once by the worker forkserver: parse typical answers so antlr's DFA cache starts warm.

The LaTeX parser (antlr4, pure Python) learns its prediction tables as it goes; a cold process parses
about half as fast as a warm one. Workers are forked from the forkserver, so they inherit the warm tables
(copy-on-write), including replacements for workers killed on a timeout.
"""
from __future__ import annotations

from distill.verify.math import check_math

SAMPLES = [
    ("\\frac{14}{3}", "\\sqrt{2}+\\frac{\\pi}{4}"), ("\\left( 3, \\frac{\\pi}{2} \\right)", "(1,-2,4)"),
    ("(-\\infty, 2]", "[1, 3) \\cup (4, \\infty)"), ("\\{1, 2\\}", "x^2 + 2x + 1"), ("10\\%", "45^\\circ"),
    ("\\text{(C)}", "\\text{Evelyn}"), ("2\\sqrt{5}", "\\dfrac{3\\sqrt{3}}{2}"), ("y = 2x - 3", "x \\in [0, 1]"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "-\\frac{1}{2}, 3"), ("6 - 5i", "\\log_2 8"),
]

for gold, other in SAMPLES:
    check_math(gold, f"\\boxed{{{other}}}", 5.0)
