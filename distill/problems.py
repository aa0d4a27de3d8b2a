"""Problems from any source: the one place that reads Problem records and refuses duplicate ids.

generate, filter, eval, rl, kd and decontamination all read their problems here, so a Problem JSONL, a parquet file,
a `save_to_disk` folder and a hub id (see distill.sources) work wherever problems are accepted. A row maps
onto a Problem by
  - an explicit field map ({Problem field: row column}, e.g. {"problem": "question", "answer": "label"});
  - else the usual column names (problem/question, id/unique_id/task_id/uuid, answer);
  - a per-domain default for rows without a `domain`.
Integer and float ids become strings (3 and 3.0 both give "3"); so do numeric answers. A row that still does
not make a Problem stops the read with one paragraph naming the source, the row, the field and what was
expected.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from distill.records import Problem
from distill.sources import SourceError, iter_rows

ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "unique_id", "task_id", "uuid", "problem_id", "ID", "Record ID"),
    "problem": ("problem", "question", "Problem", "Question"),
    "answer": ("answer", "Answer"),
}


def stable_id(prefix: str, text: str) -> str:
    """An id derived from the problem text, for sources without ids: stable across runs and machines."""
    return f"{prefix}-{hashlib.sha1(text.encode()).hexdigest()[:10]}"


def as_text(value: Any) -> str:
    """Numbers as the text a person would write: 7 -> '7', 142.0 -> '142', 0.5 -> '0.5'."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def row_to_problem(row: dict[str, Any], where: str, *, field_map: dict[str, str] | None = None,
                   domain: str | None = None, prefix: str = "problem") -> Problem:
    data: dict[str, Any] = {}
    for target, column in (field_map or {}).items():
        if column not in row:
            raise SourceError(f"{where}: the field map wants column '{column}' (for {target}) but the row has "
                              f"{sorted(row)}")
        data[target] = row[column]
    for target, names in ALIASES.items():
        if target not in data:
            found = next((row[n] for n in names if row.get(n) is not None), None)
            if found is not None:
                data[target] = found
    is_record = "id" in row and "problem" in row  # a Problem record keeps its extra keys, as Problem allows
    for key, value in row.items():  # the rest of a Problem record (domain, tests, choices, meta, ...)
        if (is_record or key in Problem.model_fields) and key not in data:
            data[key] = value
    if not isinstance(data.get("problem"), str):
        got = "no such column" if "problem" not in data else f"a {type(data['problem']).__name__}"
        raise SourceError(f"{where}: field 'problem': expected the problem text ({got}; the row has columns "
                          f"{sorted(row)}). Map a column to it with a field map, e.g. problem=question.")
    for key in ("id", "answer"):
        if isinstance(data.get(key), (int, float)):
            data[key] = as_text(data[key])
    data.setdefault("id", stable_id(prefix, data["problem"]))
    if data.get("domain") is None:
        data["domain"] = domain or "math"
    return validate_problem(data, where)


def validate_problem(data: dict[str, Any], where: str) -> Problem:
    try:
        return Problem.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "<record>"
        value = repr(first.get("input"))
        value = value if len(value) <= 60 else value[:57] + "..."
        raise SourceError(f"{where}: field '{field}' has the bad value {value}: {first['msg'][0].lower()}"
                          f"{first['msg'][1:]} (a Problem needs id, problem text and domain math|code|mcq|text; "
                          f"answer, tests and entry_point are text).") from None


def unique_problems(items: Iterable[Problem | dict[str, Any]], label: str = "the given problems"
                    ) -> Iterator[Problem]:
    """Problems given in memory (the Python API), checked like those read from a source."""
    return _unique((f"{label}: record {i}", item if isinstance(item, Problem) else validate_problem(item, f"{label}: record {i}"))
                   for i, item in enumerate(items, start=1))


def _unique(located: Iterable[tuple[str, Problem]]) -> Iterator[Problem]:
    seen: dict[str, str] = {}
    for where, problem in located:
        if problem.id in seen:
            raise SourceError(f"{where}: problem id '{problem.id}' appears twice (first at {seen[problem.id]}); "
                              "ids must be unique, traces and verdicts are keyed by them")
        seen[problem.id] = where
        yield problem


def iter_problems(spec: str | Path, *, field_map: dict[str, str] | None = None, domain: str | None = None,
                  limit: int | None = None, label: str | None = None) -> Iterator[Problem]:
    """Stream the Problems of `spec`; stops with a clear message at a bad row or a repeated id."""
    prefix = Path(str(spec)).stem.split(":")[0] or "problem"

    def located() -> Iterator[tuple[str, Problem]]:
        for where, row in iter_rows(spec):
            where = f"{label}: {where}" if label else where
            yield where, row_to_problem(row, where, field_map=field_map, domain=domain, prefix=prefix)

    for count, problem in enumerate(_unique(located())):
        if limit is not None and count >= limit:
            return
        yield problem


def load_problems(spec: str | Path, *, field_map: dict[str, str] | None = None, domain: str | None = None,
                  limit: int | None = None, label: str | None = None, allow_empty: bool = False
                  ) -> dict[str, Problem]:
    """All Problems of `spec` by id, the one reader every stage uses. An empty source is an error (a typo in a
    path should not score 0 of 0) unless `allow_empty`: then the stage decides, with its own message."""
    problems = {p.id: p for p in iter_problems(spec, field_map=field_map, domain=domain, limit=limit, label=label)}
    if not problems and not allow_empty:
        raise SourceError(f"{(label + ': ') if label else ''}{spec} holds no problems")
    return problems
