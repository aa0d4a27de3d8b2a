"""The trace checks the filter and the RL rewards share: the think block's format, truncation, and the
reasoning's language against the prompt's (DeepSeek-AI 2025, sec. 2.3.3 and R1's language reward).

They sit below both stages, so neither imports the other; `distill.filter.checks` re-exports them beside its
own checks. Each is `fn(trace, problem, quality_config) -> CheckResult`, pure Python, linear in the trace.
"""
from __future__ import annotations

import bisect
import functools
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from distill.chat_format import THINK_CLOSE, THINK_OPEN
from distill.config import QualityConfig
from distill.records import Problem, Trace


@dataclass(frozen=True)
class CheckResult:
    passed: bool
    reason: str = ""
    score: Any = None


# ----------------------------------------------------------------------------------------- scripts
# Letters are grouped by writing system; Greek counts for nothing (it is math notation in any language),
# and Han, kana and bopomofo form one CJK group so Japanese with kanji is not "mixed".
_SCRIPT_RANGES = [
    (0x0041, "Latin"), (0x0300, None), (0x0370, "Greek"), (0x0400, "Cyrillic"), (0x0530, "Armenian"),
    (0x0590, "Hebrew"), (0x0600, "Arabic"), (0x0700, "Other"), (0x0750, "Arabic"), (0x0780, "Other"),
    (0x08A0, "Arabic"), (0x0900, "Indic"), (0x0E00, "Thai"), (0x0E80, "Other"), (0x10A0, "Georgian"),
    (0x1100, "Hangul"), (0x1200, "Other"), (0x1E00, "Latin"), (0x1F00, "Greek"),
    (0x2000, None),  # punctuation, letterlike symbols (ℝ, ℓ), math operators
    (0x2C60, "Latin"), (0x2C80, "Other"), (0x2E80, "CJK"), (0x3130, "Hangul"), (0x3190, "CJK"),
    (0xA000, "Other"), (0xA720, "Latin"), (0xA800, "Other"), (0xAC00, "Hangul"), (0xD7B0, "Other"),
    (0xF900, "CJK"), (0xFB00, "Other"), (0xFB50, "Arabic"), (0xFE00, None), (0xFE70, "Arabic"),
    (0xFF00, None), (0xFF21, "Latin"), (0xFF5B, None), (0xFF66, "CJK"), (0xFFA0, "Hangul"), (0xFFE0, None),
    (0x10000, "Other"), (0x1D400, None),  # mathematical alphanumerics (𝑥, 𝔽)
    (0x1D800, "Other"), (0x20000, "CJK"), (0x32400, "Other"),
]
_STARTS = [start for start, _ in _SCRIPT_RANGES]
NEUTRAL = {None, "Greek"}
_LETTER = re.compile(r"[^\W\d_]")
# Math is script-neutral: LaTeX spans and commands, and lone Latin letters (variables), are not language.
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]|\\[A-Za-z]+|(?<![A-Za-z])[A-Za-z](?![A-Za-z])", re.DOTALL)
_NON_ASCII_LETTER = re.compile(r"[^\W\d_a-zA-Z]")


@functools.lru_cache(maxsize=65536)
def script_of(char: str) -> str | None:
    i = bisect.bisect_right(_STARTS, ord(char)) - 1
    return _SCRIPT_RANGES[i][1] if i >= 0 else None


def script_counts(text: str) -> Counter:
    text = _MATH.sub(" ", text)
    counts: Counter = Counter()
    ascii_letters = len(_LETTER.findall(text)) - len(others := _NON_ASCII_LETTER.findall(text))
    if ascii_letters:
        counts["Latin"] = ascii_letters
    for char in others:
        counts[script_of(char)] += 1
    return counts


def prompt_text(trace: Trace) -> str:
    return "\n".join(m.get("content", "") for m in trace.prompt if m.get("role") == "user")


def prompt_scripts(trace: Trace) -> set[str]:
    """Scripts the question is written in (at least 5% of its letters, or 3 letters); Latin by default."""
    counts = script_counts(prompt_text(trace))
    total = sum(n for s, n in counts.items() if s not in NEUTRAL)
    scripts = {s for s, n in counts.items() if s not in NEUTRAL and n >= max(3, 0.05 * total)}
    return scripts or {"Latin"}


# ------------------------------------------------------------------------------------------ checks
def think_format(trace: Trace, problem: Problem | None, q: QualityConfig) -> CheckResult:
    """Exactly one closed, non-empty think block, then a non-empty answer."""
    problems = []
    if not trace.reasoning.strip():
        problems.append("empty or missing reasoning")
    if not trace.answer.strip():
        problems.append("no answer after </think>" if trace.reasoning.strip() else "no answer")
    closes = trace.completion.count(THINK_CLOSE)
    if closes > 1:
        problems.append(f"{closes} </think> tags (expected one think block)")
    stray = sum(part.count(tag) for part in (trace.reasoning, trace.answer) for tag in (THINK_OPEN, THINK_CLOSE))
    if stray and closes <= 1:
        problems.append("think tags inside the reasoning or answer")
    return CheckResult(not problems, "; ".join(problems), not problems)


def truncated(trace: Trace, problem: Problem | None, q: QualityConfig) -> CheckResult:
    cut = trace.finish_reason == "length"
    return CheckResult(not cut, f"truncated at {trace.completion_tokens} tokens (finish_reason=length)" if cut else "",
                       trace.finish_reason)


def lang_mix(trace: Trace, problem: Problem | None, q: QualityConfig) -> CheckResult:
    """Share of the reasoning's letters written in a script the prompt does not use."""
    counts = script_counts(trace.reasoning)
    total = sum(n for s, n in counts.items() if s not in NEUTRAL)
    if not total:
        return CheckResult(True, "", 0.0)
    allowed = prompt_scripts(trace)
    foreign = {s: n for s, n in counts.items() if s not in NEUTRAL and s not in allowed}
    share = sum(foreign.values()) / total
    if share > q.max_lang_mix:
        top = ", ".join(f"{s} {n / total:.0%}" for s, n in sorted(foreign.items(), key=lambda kv: -kv[1]))
        return CheckResult(False, f"{share:.1%} of the reasoning's letters are in other scripts than the prompt's "
                                  f"({top}; limit {q.max_lang_mix:.0%})", round(share, 4))
    return CheckResult(True, "", round(share, 4))
