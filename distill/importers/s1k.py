"""simplescaling/s1K and s1K-1.1: 1,000 hard questions with a thinking trajectory and a final attempt.

s1K columns: solution, question, cot_type, source_type, metadata, cot, thinking_trajectories (a list, one
Gemini trajectory), attempt. s1K-1.1 adds the R1 pair deepseek_thinking_trajectory / deepseek_attempt next to
gemini_thinking_trajectory / gemini_attempt: each teacher becomes its own sample. The gold `solution` becomes
the Problem's answer (math-verify reads its final expression).
"""
from __future__ import annotations

from distill.importers.common import Context, Imported, make_problem, make_trace, text, text_list
from distill.problems import stable_id

NAME = "s1k"
COLUMNS = {"question", "attempt", "thinking_trajectories"}
COLUMNS_1_1 = {"question", "deepseek_thinking_trajectory", "deepseek_attempt"}
TEACHERS = {"deepseek": "deepseek-ai/DeepSeek-R1", "gemini": "google/gemini-2.0-flash-thinking-exp"}


def convert(row: dict, where: str, ctx: Context) -> Imported:
    question = text(row, "question", where, "the question")
    domain = ctx.domain if ctx.domain != "math" else ("math" if row.get("cot_type") in (None, "math") else "text")
    problem = make_problem(where, id=stable_id(NAME, question), problem=question, domain=domain,
                           answer=row.get("solution"), source=ctx.source,
                           meta={k: row[k] for k in ("cot_type", "source_type") if row.get(k) is not None})
    out = Imported(problem)
    if "deepseek_thinking_trajectory" in row:  # s1K-1.1
        for who in ("deepseek", "gemini"):
            if row.get(f"{who}_thinking_trajectory") is None:
                continue
            reasoning = text(row, f"{who}_thinking_trajectory", where, f"{who}'s thinking trajectory")
            attempt = text(row, f"{who}_attempt", where, f"{who}'s final attempt")
            out.traces.append(make_trace(problem, prompt=None, completion="", teacher=ctx.teacher or TEACHERS[who],
                                         reasoning=reasoning.strip(), answer=attempt.strip()))
        return out
    trajectories = text_list(row, "thinking_trajectories", where, "the thinking trajectories")
    attempt = text(row, "attempt", where, "the final attempt")
    for reasoning in trajectories:
        out.traces.append(make_trace(problem, prompt=None, completion="", teacher=ctx.teacher or TEACHERS["gemini"],
                                     reasoning=reasoning.strip(), answer=attempt.strip()))
    return out
