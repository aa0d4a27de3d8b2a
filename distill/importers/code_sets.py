"""Code problem sets as their graders publish them: APPS, TACO and open-r1/codeforces rows -> Problems with
structured tests (`distill.verify.code_tests`), run and compared as each origin's own checker does.

  apps        codeparrot/apps: problem_id, question, solutions (JSON), input_output (JSON), difficulty, url,
              starter_code
  taco        BAAI/TACO: the same fields and more (tags, source, time_limit, ...)
  codeforces  open-r1/codeforces: description, input_format, output_format, examples, official_tests,
              generated_checker, time_limit, memory_limit, ...

A Codeforces problem judged by a checker of its own (several right outputs) keeps no tests: comparing its
outputs as text would reject right programs, so its verdict says it has no tests to run.
"""
from __future__ import annotations

from distill.problems import as_text, stable_id, validate_problem
from distill.records import Problem
from distill.sources import SourceError
from distill.verify.code_tests import from_apps, from_codeforces


def _apps_like(row: dict, where: str, origin: str) -> Problem:
    question = row.get("question")
    if not isinstance(question, str) or not question.strip():
        raise SourceError(f"{where}: field 'question': expected the problem statement (text)")
    if not row.get("input_output"):
        raise SourceError(f"{where}: field 'input_output': expected {origin.upper()}'s JSON "
                          "{\"inputs\", \"outputs\"[, \"fn_name\"]}; the row has none, so nothing can check an answer")
    try:
        tests = from_apps(row, origin=origin)
    except (ValueError, KeyError, TypeError) as exc:
        raise SourceError(f"{where}: field 'input_output': {exc}") from None
    starter = row.get("starter_code") or ""
    text = question + (f"\n\nStart from this code:\n```python\n{starter}\n```" if starter.strip() else
                       "\n\nRead the input from standard input and write the answer to standard output.")
    ident = row.get("problem_id")
    return validate_problem({
        "id": f"{origin}-{as_text(ident)}" if ident is not None else stable_id(origin, question), "problem": text,
        "domain": "code", "tests": tests, "source": origin,
        "meta": {k: row[k] for k in ("difficulty", "url", "source", "name") if row.get(k) is not None}}, where)


def apps(row: dict, where: str) -> Problem:
    return _apps_like(row, where, "apps")


def taco(row: dict, where: str) -> Problem:
    return _apps_like(row, where, "taco")


def codeforces(row: dict, where: str) -> Problem:
    description = row.get("description")
    if not isinstance(description, str):
        raise SourceError(f"{where}: field 'description': expected the problem statement (text)")
    parts = [row.get("title") or "", description]
    for title, key in (("Input", "input_format"), ("Output", "output_format"), ("Note", "note")):
        if row.get(key):
            parts.append(f"{title}\n{row[key]}")
    meta = {k: row[k] for k in ("contest_id", "index", "rating", "tags", "time_limit", "memory_limit")
            if row.get(k) is not None}
    try:
        tests = from_codeforces(row)
    except ValueError as exc:
        tests, meta["unverifiable"] = None, str(exc)
    return validate_problem({"id": f"cf-{as_text(row.get('id') or stable_id('codeforces', description))}",
                             "problem": "\n\n".join(p for p in parts if p), "domain": "code", "tests": tests,
                             "source": "codeforces", "meta": meta}, where)
