"""Split a teacher's completion into R1's two parts: `reasoning` (the chain of thought) and `answer`.

Three teacher styles end up in the same Trace shape:
- reasoning models that write `<think>…</think>` (or whose template/prefill already opened the tag, so
  the completion starts inside it and only closes it);
- servers that parse the chain out themselves and return it as `reasoning_content`;
- plain chain-of-thought teachers without tags: the reasoning is the text before the final answer,
  and the final answer starts at the paragraph holding the last answer marker (\\boxed{}, "Final
  answer", "The answer is", "Answer:", "####", or the last fenced code block).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from distill.chat_format import THINK_CLOSE, THINK_OPEN

# Phrases that open a final answer in plain chain-of-thought; the last one in the text wins.
_ANSWER_MARKERS = re.compile(
    r"\\boxed\s*\{|final answer|the answer is|answer\s*:|^\s*####",
    re.IGNORECASE | re.MULTILINE,
)
_FENCE = "```"
_SENTENCE_END = re.compile(r"[.!?]\s+")

How = Literal["reasoning_content", "think", "unclosed_think", "plain", "none"]


@dataclass(frozen=True)
class Split:
    reasoning: str
    answer: str
    how: How  # which rule produced the split; counted in the stats


def split_completion(completion: str, *, prefilled_think: bool, reasoning_content: str | None,
                     fmt: str) -> Split:
    if fmt not in ("auto", "think", "plain"):
        raise ValueError(f"reasoning format {fmt!r}: expected auto, think or plain")
    if reasoning_content:
        return Split(reasoning_content.strip(), _strip_tags(completion).strip(), "reasoning_content")
    if fmt == "plain":
        return _split_plain(completion)
    has_tags = THINK_CLOSE in completion or completion.lstrip().startswith(THINK_OPEN)
    if fmt == "think" or has_tags:
        return _split_think(completion, opened=prefilled_think)
    # auto, no tags: the prefill opened a block the model never closed. With an answer marker in the
    # text the model simply ignored the tag (a plain teacher); without one the chain was cut off.
    if prefilled_think and not _has_answer_marker(completion):
        return Split(completion.strip(), "", "unclosed_think")
    return _split_plain(completion)


def _split_think(text: str, *, opened: bool) -> Split:
    start = text.find(THINK_OPEN)
    close = text.find(THINK_CLOSE)
    if start != -1 and (close == -1 or start < close):
        body_from = start + len(THINK_OPEN)
    elif opened or close != -1:
        body_from = 0  # the prompt opened the block: the completion starts inside it
    else:
        return Split("", text.strip(), "none")
    if close == -1:
        return Split(text[body_from:].strip(), "", "unclosed_think")
    return Split(text[body_from:close].strip(), text[close + len(THINK_CLOSE):].strip(), "think")


def _split_plain(text: str) -> Split:
    at = _final_answer_start(text)
    if at is None:
        return Split("", text.strip(), "none")
    return Split(text[:at].strip(), text[at:].strip(), "plain")


def _has_answer_marker(text: str) -> bool:
    return _final_answer_start(text) is not None


def _final_answer_start(text: str) -> int | None:
    """Start of the paragraph holding the last answer marker (or the last code block), else None."""
    positions = [m.start() for m in _ANSWER_MARKERS.finditer(text)]
    fences = [m.start() for m in re.finditer(re.escape(_FENCE), text)]
    if len(fences) >= 2:
        positions.append(fences[-2] if len(fences) % 2 == 0 else fences[-1])
    if not positions:
        return None
    last = max(positions)
    paragraph = text.rfind("\n\n", 0, last)
    if paragraph != -1:
        return paragraph + 2
    # One paragraph: cutting there would leave no reasoning (and the trace rejected as if it had none), so
    # the answer starts at the line, else the sentence, that holds the marker.
    line = text.rfind("\n", 0, last)
    if line != -1:
        return line + 1
    sentences = [m.end() for m in _SENTENCE_END.finditer(text, 0, last)]
    return sentences[-1] if sentences else 0


def _strip_tags(text: str) -> str:
    return text.replace(THINK_OPEN, "").replace(THINK_CLOSE, "")
