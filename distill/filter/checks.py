"""The R1 recipe's per-trace quality checks (DeepSeek-AI 2025, sec. 2.3.3): a readable, complete chain of
thought in the prompt's language, without loops, walls of text or stray code.

Each check is `fn(trace, problem, quality_config) -> CheckResult`, pure Python, linear in the trace's
length. `quality_checks` runs the enabled ones in funnel order.
"""
from __future__ import annotations

import re
from collections.abc import Callable

from distill.checks import (  # noqa: F401 (re-exported: the filter's checks in one namespace)
    NEUTRAL,
    CheckResult,
    lang_mix,
    prompt_scripts,
    prompt_text,
    script_counts,
    script_of,
    think_format,
    truncated,
)
from distill.config import QualityConfig
from distill.records import Problem, Trace

CHARS_PER_TOKEN = 4.0  # estimate when a trace carries no token count


def length(trace: Trace, problem: Problem | None, q: QualityConfig) -> CheckResult:
    tokens = trace.completion_tokens or round(len(trace.completion) / CHARS_PER_TOKEN)
    how = "" if trace.completion_tokens else " (estimated from characters)"
    if tokens < q.min_tokens:
        return CheckResult(False, f"{tokens} tokens{how}, below min_tokens={q.min_tokens}", tokens)
    if q.max_tokens is not None and tokens > q.max_tokens:
        return CheckResult(False, f"{tokens} tokens{how}, above max_tokens={q.max_tokens}", tokens)
    return CheckResult(True, "", tokens)


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
