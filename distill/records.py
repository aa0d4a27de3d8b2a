"""The data contracts: Problem -> Trace -> Verdict, one JSON object a line.

Records are pydantic models so a malformed file fails with the field that is wrong; extra keys are
kept (`extra="allow"`) because users carry their own metadata through the pipeline.
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Domain = Literal["math", "code", "mcq", "text"]


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class Problem(Record):
    id: str
    problem: str
    domain: Domain = "math"
    answer: str | None = None
    tests: str | None = None          # code: a program appended to the solution; must raise on failure
    entry_point: str | None = None    # code: the function the tests call (HumanEval's `check(candidate)`)
    choices: list[str] | None = None  # mcq: the options, lettered A, B, C… in order
    source: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.id


class Trace(Record):
    problem_id: str
    sample: int
    teacher: str
    prompt: list[dict[str, str]]
    completion: str
    reasoning: str = ""
    answer: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    config_hash: str = ""

    @property
    def key(self) -> str:
        return trace_key(self.problem_id, self.sample)


class Verdict(Trace):
    kept: bool
    reasons: list[dict[str, str]] = Field(default_factory=list)  # [{"check": name, "detail": why}]
    scores: dict[str, Any] = Field(default_factory=dict)


def trace_key(problem_id: str, sample: int) -> str:
    return f"{problem_id}#{sample}"
