"""What every trace importer shares: typed field access that reports bad rows in one sentence, and the
Problem / Trace records they emit (reasoning and answer already split, the assistant turn in R1's shape)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from distill.chat_format import THINK_CLOSE, THINK_OPEN
from distill.config import PromptConfig
from distill.generation.extract import split_completion
from distill.generation.prompts import build_messages
from distill.problems import as_text, validate_problem
from distill.records import Problem, Trace
from distill.sources import SourceError


@dataclass
class Context:
    """Settings one import applies to every row."""
    source: str
    domain: str = "math"
    teacher: str | None = None


@dataclass
class Imported:
    """One row's worth: its problem and the traces of it (a row may hold several generations)."""
    problem: Problem
    traces: list[dict[str, Any]] = field(default_factory=list)


def text(row: dict, name: str, where: str, what: str) -> str:
    value = row.get(name)
    if not isinstance(value, str):
        got = "missing" if name not in row else f"a {type(value).__name__}"
        raise SourceError(f"{where}: field '{name}': expected {what} (text), got {got}")
    return value


def text_list(row: dict, name: str, where: str, what: str) -> list[str]:
    value = row.get(name)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        got = "missing" if name not in row else f"a {type(value).__name__}"
        raise SourceError(f"{where}: field '{name}': expected {what} (a list of texts), got {got}")
    return list(value)


def optional_list(row: dict, name: str, where: str, length: int, what: str) -> list[Any] | None:
    value = row.get(name)
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != length:
        shape = f"a list of {len(value)}" if isinstance(value, (list, tuple)) else f"a {type(value).__name__}"
        raise SourceError(f"{where}: field '{name}': expected {what}, one per generation ({length}), got {shape}")
    return list(value)


def make_problem(where: str, *, id: Any, problem: str, domain: str, answer: Any = None,
                 source: str, meta: dict[str, Any] | None = None) -> Problem:
    return validate_problem({"id": as_text(id), "problem": problem, "domain": domain,
                             "answer": None if answer is None else as_text(answer), "source": source,
                             "meta": meta or {}}, where)


def make_trace(problem: Problem, *, prompt: list[dict[str, str]] | None, completion: str, teacher: str,
               finish_reason: str | None = "stop", reasoning: str | None = None, answer: str | None = None,
               meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Trace (sample number filled in by the caller). Reasoning and answer come from the completion with
    the same splitter `distill generate` uses (tags, else plain chain of thought), unless given; sets that
    store them apart (s1K) get a completion that joins them in tags, the way a teacher would have written it.
    SFT builds the assistant turn from reasoning and answer, never from the completion."""
    if reasoning is None or answer is None:
        split = split_completion(completion, prefilled_think=False, reasoning_content=None, fmt="auto")
        reasoning, answer = split.reasoning, split.answer
    elif not completion:
        completion = f"{THINK_OPEN}\n{reasoning}\n{THINK_CLOSE}\n\n{answer}"
    messages = prompt if prompt is not None else build_messages(problem, PromptConfig())
    trace = Trace(problem_id=problem.id, sample=0, teacher=teacher, prompt=messages, completion=completion,
                  reasoning=reasoning, answer=answer, finish_reason=finish_reason)
    data = trace.to_json()
    data["meta"] = meta or {}
    return data
