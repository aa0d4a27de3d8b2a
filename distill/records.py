"""The data contracts: Problem -> Trace -> Verdict, one JSON object a line.

Records are pydantic models so a malformed file fails with the field that is wrong; extra keys are
kept (`extra="allow"`) because users carry their own metadata through the pipeline.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from distill.errors import DistillError

Domain = Literal["math", "code", "mcq", "text"]


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class StdioCase(BaseModel):
    """The program reads `input` on stdin; what it prints must match `output` (whitespace-tolerant)."""
    model_config = ConfigDict(extra="forbid")
    input: str
    output: str


class CallCase(BaseModel):
    """`fn_name(*args)` must give `expected`, or one of `alternatives`. Values are Python literals (JSON
    values are Python literals too), so tuples and sets survive a JSONL round trip."""
    model_config = ConfigDict(extra="forbid")
    args: str                     # a literal list of positional arguments, e.g. "[[1, 2], 'x']"
    expected: str                 # a literal, e.g. "(3, [1])"
    alternatives: list[str] = Field(default_factory=list)
    compare: Literal["eq", "close", "truthy", "falsy"] = "eq"
    tolerance: float | None = None  # compare "close": |result - expected| < tolerance


class CodeTests(BaseModel):
    """Structured code tests: compared in the verifying process, never shown to the program."""
    model_config = ConfigDict(extra="forbid")
    stdio: list[StdioCase] = Field(default_factory=list)
    fn_name: str | None = None
    calls: list[CallCase] = Field(default_factory=list)
    float_tol: float | None = None   # numbers in outputs may differ by this much (absolute or relative)
    json_values: bool = False        # expected values came from JSON: a returned tuple counts as a list
    origin: str = ""                 # what produced them, e.g. "humaneval-converted", "livecodebench"


class Problem(Record):
    id: str
    problem: str
    domain: Domain = "math"
    answer: str | None = None
    # code: structured tests (stdin/stdout or calls), or a program appended to the solution that raises
    # on failure (HumanEval's `check(candidate)`; converted to calls where its asserts allow)
    tests: str | CodeTests | None = None
    entry_point: str | None = None    # code: the function the tests call (HumanEval's `check(candidate)`)
    choices: list[str] | None = None  # mcq: the options, lettered A, B, C… in order
    source: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return self.id


class Trace(Record):
    problem_id: str
    sample: int = Field(ge=0, lt=1 << 31)  # an index among n; bounded so every writer (parquet int64) takes it
    teacher: str
    prompt: list[dict[str, str]]
    completion: str
    reasoning: str = ""
    answer: str = ""
    finish_reason: str | None = None
    prompt_tokens: int = Field(0, ge=0)
    completion_tokens: int = Field(0, ge=0)
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


def read_traces(path: str | Path, used_for: str) -> Iterator[tuple[int, Trace]]:
    """(line, Trace) for every row of a Trace JSONL, read through distill.jsonl's boundary. A row that is not a
    Trace stops the read with `file:line`, the field and what a trace holds; a Problem record (the usual mix-up
    of the two files) is named as such. `used_for` says what wanted traces, e.g. "sft trains on kept traces"."""
    from distill.jsonl import JsonlReader  # jsonl knows nothing of records: no cycle

    for lineno, row in JsonlReader(path).numbered():
        where = f"{path}:{lineno}"
        if "problem_id" not in row and "problem" in row:
            raise DistillError(f"{where}: a Problem record, not a trace; {used_for}")
        try:
            yield lineno, Trace.model_validate(row)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "<record>"
            raise DistillError(f"{where}: field '{field}': {first['msg'][0].lower()}{first['msg'][1:]} (expected a "
                               "trace: problem_id, sample, teacher, prompt messages, completion)") from None
