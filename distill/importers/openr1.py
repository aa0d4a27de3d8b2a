"""open-r1/OpenR1-Math-220k: one row a problem, several R1 generations each.

Columns (dataset card): problem, solution, answer, problem_type, question_type, source, uuid,
is_reasoning_complete[], generations[], correctness_math_verify[], correctness_llama[], finish_reasons[],
correctness_count, messages. One Trace per generation; the dataset's own verdicts travel in the trace's
`meta` (correctness_math_verify, correctness_llama, is_reasoning_complete), so `distill filter` re-verifies
with its own verifier and the two can be compared.
"""
from __future__ import annotations

from distill.importers.common import (
    Context,
    Imported,
    make_problem,
    make_trace,
    optional_list,
    text,
    text_list,
)
from distill.problems import stable_id

NAME = "openr1"
COLUMNS = {"problem", "generations"}
TEACHER = "deepseek-ai/DeepSeek-R1"
VERDICTS = ("correctness_math_verify", "correctness_llama", "is_reasoning_complete")


def convert(row: dict, where: str, ctx: Context) -> Imported:
    question = text(row, "problem", where, "the problem statement")
    generations = text_list(row, "generations", where, "the teacher's generations")
    finish = optional_list(row, "finish_reasons", where, len(generations), "finish reasons")
    verdicts = {name: optional_list(row, name, where, len(generations), f"{name} values") for name in VERDICTS}
    ident = row.get("uuid") or row.get("id")
    problem = make_problem(where, id=ident if ident is not None else stable_id(NAME, question), problem=question,
                           domain=ctx.domain, answer=row.get("answer"), source=ctx.source,
                           meta={k: row[k] for k in ("problem_type", "question_type", "source", "solution")
                                 if row.get(k) is not None})
    out = Imported(problem)
    for i, generation in enumerate(generations):
        meta = {name: values[i] for name, values in verdicts.items() if values is not None}
        out.traces.append(make_trace(problem, prompt=None, completion=generation, teacher=ctx.teacher or TEACHER,
                                     finish_reason=(finish[i] if finish else None) or "stop", meta=meta))
    return out
