"""The R1 recipe's per-trace quality checks (DeepSeek-AI 2025, sec. 2.3.3): a readable, complete chain of
thought in the prompt's language, without loops, walls of text or stray code.

Each check is `fn(trace, problem, quality_config) -> CheckResult`, pure Python, linear in the trace's
length. `quality_checks` runs the enabled ones in funnel order.
"""
from __future__ import annotations

import bisect
import functools
import re
from collections import Counter
from collections.abc import Callable

from distill.chat_format import THINK_CLOSE, THINK_OPEN
from distill.config import QualityConfig
from distill.filter.registry import CheckResult
from distill.records import Problem, Trace

CHARS_PER_TOKEN = 4.0  # estimate when a trace carries no token count

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


def length(trace: Trace, problem: Problem | None, q: QualityConfig) -> CheckResult:
    tokens = trace.completion_tokens or round(len(trace.completion) / CHARS_PER_TOKEN)
    how = "" if trace.completion_tokens else " (estimated from characters)"
    if tokens < q.min_tokens:
        return CheckResult(False, f"{tokens} tokens{how}, below min_tokens={q.min_tokens}", tokens)
    if q.max_tokens is not None and tokens > q.max_tokens:
        return CheckResult(False, f"{tokens} tokens{how}, above max_tokens={q.max_tokens}", tokens)
    return CheckResult(True, "", tokens)


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


# Scripts written without spaces between words (Han, kana, Thai, Lao, Khmer, Myanmar): each character
# counts as a word, so a loop in Chinese or Japanese is as visible as one in English.
_UNSPACED = ("\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf"
             "\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f")
_WORD = re.compile(f"[{_UNSPACED}]|[^\\s{_UNSPACED}]+")


def words_of(text: str) -> list[str]:
    """Whitespace-separated words; in unspaced scripts, characters."""
    return _WORD.findall(text)


def repetition(trace: Trace, problem: Problem | None, q: QualityConfig) -> CheckResult:
    """Share of word n-grams that repeat an earlier one: a model stuck in a loop scores near 1."""
    words = words_of(trace.reasoning + "\n" + trace.answer)
    n = q.repeat_ngram
    total = len(words) - n + 1
    if total < 2:
        return CheckResult(True, "", 0.0)
    seen = {hash(tuple(words[i:i + n])) for i in range(total)}
    share = 1 - len(seen) / total
    if share > q.max_repeat_frac:
        return CheckResult(False, f"{share:.0%} of its {n}-word sequences are repeats (limit "
                                  f"{q.max_repeat_frac:.0%}): a repetition loop", round(share, 4))
    return CheckResult(True, "", round(share, 4))


_FENCED = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)


def paragraphs(trace: Trace, problem: Problem | None, q: QualityConfig) -> CheckResult:
    """The longest paragraph of prose in the reasoning (code blocks aside)."""
    prose = _FENCED.sub("\n\n", trace.reasoning)
    longest = max((len(p.strip()) for p in re.split(r"\n\s*\n", prose)), default=0)
    if longest > q.max_paragraph_chars:
        return CheckResult(False, f"a {longest}-character paragraph (limit {q.max_paragraph_chars})", longest)
    return CheckResult(True, "", longest)


def code_in_reasoning(trace: Trace, problem: Problem | None, q: QualityConfig) -> CheckResult:
    blocks = len(_FENCED.findall(trace.reasoning))
    domain = problem.domain if problem is not None else None
    if blocks and domain != "code" and not q.allow_code_in_reasoning:
        return CheckResult(False, f"{blocks} code block(s) in the reasoning of a {domain or 'non-code'} problem",
                           blocks)
    return CheckResult(True, "", blocks)


QualityCheck = Callable[[Trace, "Problem | None", QualityConfig], CheckResult]

# Funnel order: a trace rejected for several reasons is counted against the first one here.
QUALITY_CHECKS: list[tuple[str, QualityCheck, Callable[[QualityConfig], bool]]] = [
    ("think_format", think_format, lambda q: q.require_think),
    ("truncated", truncated, lambda q: q.drop_truncated),
    ("length", length, lambda q: q.min_tokens > 0 or q.max_tokens is not None),
    ("lang_mix", lang_mix, lambda q: q.max_lang_mix < 1),
    ("repetition", repetition, lambda q: q.max_repeat_frac < 1),
    ("paragraphs", paragraphs, lambda q: q.max_paragraph_chars > 0),
    ("code_in_reasoning", code_in_reasoning, lambda q: not q.allow_code_in_reasoning),
]


def quality_checks(trace: Trace, problem: Problem | None, q: QualityConfig) -> list[tuple[str, CheckResult]]:
    return [(name, fn(trace, problem, q)) for name, fn, enabled in QUALITY_CHECKS if enabled(q)]
