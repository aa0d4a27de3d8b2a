"""Bring your own data: public trace sets -> Problems + Traces, benchmark files -> Problems.

Trace formats (one module each; detected from the columns, most specific first):
  openr1        OpenR1-Math-220k: problem, answer, generations[], correctness_math_verify[], finish_reasons[]
  s1k           s1K / s1K-1.1: question, thinking_trajectories[] + attempt, or deepseek_/gemini_ pairs
  openthoughts  OpenThoughts-114k / Bespoke-Stratos-17k: conversations with <|begin_of_thought|>…;
                OpenThoughts2-1M / OpenThoughts3-1.2M: conversations with <think>…</think>
  messages      chat messages with <think>…</think> (Mixture-of-Thoughts, most R1 distillation sets)
Problem formats: gsm8k, math, humaneval (the benchmark files' own shapes, see distill.benchmarks), apps,
taco, codeforces (code sets with their tests, see distill.importers.code_sets) and `problems` (any source
with a field map; see distill.problems).

`import_traces` writes OUT/problems.jsonl and OUT/traces.jsonl, which `distill filter` and `distill sft` take
as they are. Both files are appended by key, so an interrupted import resumes where it stopped.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from distill import benchmarks
from distill.importers import code_sets, messages, openr1, openthoughts, s1k
from distill.importers.common import Context
from distill.jsonl import JsonlWriter
from distill.problems import iter_problems
from distill.records import Problem, trace_key
from distill.sources import SourceError, iter_rows, parse_spec

TRACE_FORMATS: dict[str, ModuleType] = {m.NAME: m for m in (openr1, s1k, openthoughts, messages)}
PROBLEM_FORMATS = {"gsm8k": benchmarks.gsm8k, "math": benchmarks.math500, "humaneval": benchmarks.humaneval,
                   "apps": code_sets.apps, "taco": code_sets.taco, "codeforces": code_sets.codeforces}
FORMATS = ["auto", *TRACE_FORMATS, *PROBLEM_FORMATS, "problems"]


def detect_format(columns: set[str], where: str) -> str:
    """The trace format whose columns the first row has; 'problems' for a plain problem set."""
    if openr1.COLUMNS <= columns:
        return "openr1"
    if s1k.COLUMNS <= columns or s1k.COLUMNS_1_1 <= columns:
        return "s1k"
    if openthoughts.COLUMNS <= columns:
        return "openthoughts"
    if messages.COLUMNS <= columns:
        return "messages"
    if columns & {"problem", "question", "Problem", "Question"}:
        return "problems"
    raise SourceError(
        f"{where}: cannot tell the format from the columns {sorted(columns)}. Expected one of: "
        f"openr1 ({sorted(openr1.COLUMNS)}), s1k ({sorted(s1k.COLUMNS)} or {sorted(s1k.COLUMNS_1_1)}), "
        f"openthoughts ({sorted(openthoughts.COLUMNS)}), messages ({sorted(messages.COLUMNS)}), or a problem set "
        "with a 'problem' or 'question' column; name the format with --format, or map columns with --field.")


def sniff(source: str | Path) -> str:
    for where, row in iter_rows(source):
        return detect_format(set(row), where)
    raise SourceError(f"{source}: holds no rows")


@dataclass
class ImportResult:
    format: str
    problems_path: Path
    traces_path: Path | None
    problems: int      # new this run
    traces: int        # new this run


def import_traces(source: str | Path, out_dir: str | Path, *, format: str = "auto", domain: str = "math",
                  teacher: str | None = None, limit: int | None = None) -> ImportResult:
    """A public trace set -> OUT/problems.jsonl + OUT/traces.jsonl (first `limit` rows)."""
    out = Path(out_dir)
    return write_traces(source, out / "problems.jsonl", out / "traces.jsonl", format=format, domain=domain,
                        teacher=teacher, limit=limit)


def write_traces(source: str | Path, problems_path: Path, traces_path: Path, *, format: str = "auto",
                 domain: str = "math", teacher: str | None = None, limit: int | None = None) -> ImportResult:
    parse_spec(source)  # a bad spec fails here, before any file is made
    fmt = sniff(source) if format == "auto" else format
    if fmt not in TRACE_FORMATS:
        raise SourceError(f"{source}: '{fmt}' is not a trace format ({', '.join(TRACE_FORMATS)}); "
                          "import problem sets with `distill import SOURCE -o problems.jsonl`")
    module = TRACE_FORMATS[fmt]
    ctx = Context(source=str(source), domain=domain, teacher=teacher)
    texts: dict[str, str] = {}      # problem id -> text: one id must not name two problems
    samples: dict[str, int] = {}    # problem id -> traces so far (a problem may appear in several rows)
    with JsonlWriter(problems_path, key=lambda r: r["id"]) as problem_writer, \
            JsonlWriter(traces_path, key=lambda r: trace_key(r["problem_id"], r["sample"])) as trace_writer:
        new_problems = problem_writer.written
        new_traces = trace_writer.written
        for index, (where, row) in enumerate(iter_rows(source)):
            if limit is not None and index >= limit:
                break
            item = module.convert(row, where, ctx)
            problem = item.problem
            if texts.setdefault(problem.id, problem.problem) != problem.problem:
                raise SourceError(f"{where}: problem id '{problem.id}' was already used for a different problem")
            problem_writer.write(problem)
            for trace in item.traces:
                trace["sample"] = samples.get(problem.id, 0)
                samples[problem.id] = trace["sample"] + 1
                trace_writer.write(trace)
        new_problems = problem_writer.written - new_problems
        new_traces = trace_writer.written - new_traces
    return ImportResult(fmt, problems_path, traces_path, new_problems, new_traces)


def problems_of(kind: str, source: str | Path | None, field_map: dict[str, str] | None = None,
                domain: str | None = None) -> Iterator[Problem]:
    if source is None or (kind in benchmarks.REGISTRY and kind not in PROBLEM_FORMATS):
        if kind not in benchmarks.REGISTRY:
            raise SourceError(f"'{kind}' needs a SOURCE (a file, folder or hub id); only benchmark names "
                              f"({', '.join(benchmarks.REGISTRY)}) can be imported without one")
        yield from benchmarks.iter_benchmark(kind, source)
        return
    if kind in PROBLEM_FORMATS:
        convert = PROBLEM_FORMATS[kind]
        seen: set[str] = set()
        for where, row in iter_rows(source):
            problem = convert(row, where)
            if problem.id in seen:
                raise SourceError(f"{where}: problem id '{problem.id}' appears twice")
            seen.add(problem.id)
            yield problem
        return
    if kind in ("problems", "jsonl"):
        yield from iter_problems(source, field_map=field_map, domain=domain)
        return
    raise SourceError(f"unknown problem format '{kind}'; expected one of {[*PROBLEM_FORMATS, 'problems']} or a "
                      f"benchmark name ({', '.join(benchmarks.REGISTRY)})")


def import_problems(kind: str, source: str | Path | None, output: str | Path, field_map: dict[str, str] | None = None,
                    domain: str | None = None, limit: int | None = None) -> int:
    """A problem set (or a named benchmark, when `source` is None) -> Problem JSONL; returns how many are new."""
    written = 0
    with JsonlWriter(output, key=lambda r: r["id"]) as writer:
        for problem in problems_of(kind, source, field_map, domain):
            if limit is not None and written >= limit:
                break
            written += writer.write(problem)
    return written
