"""OpenThoughts: `conversations` [{from, value}], in two generations of the format.

OpenThoughts-114k and Bespoke-Stratos-17k (`system` + `conversations`): the assistant value is
`<|begin_of_thought|>…<|end_of_thought|>` then `<|begin_of_solution|>…<|end_of_solution|>`. The thought block
becomes the reasoning and the solution block the answer, in R1's `<think>` form. The sets' long system
prompt only explains those custom tags, which the `<think>` form replaces, so it is dropped (R1 trains with
no system prompt).

OpenThoughts2-1M (`conversations`, `question`, `source`, `id`) and OpenThoughts3-1.2M (`conversations`,
`difficulty`, `source`, `domain`): the assistant value is R1's own `<think>…</think>` then the answer, split
as a teacher's completion is. OpenThoughts3's `domain` (math, code, science) sets the problem's domain unless
the import names one; science problems are `text` (no verifier).

No gold answers in either: filter with `filter.verify=false`.
"""
from __future__ import annotations

import re

from distill.chat_format import THINK_CLOSE, THINK_OPEN
from distill.importers.common import Context, Imported, make_problem, make_trace
from distill.importers.messages import chat_turns, split_dialogue
from distill.problems import stable_id
from distill.sources import SourceError

NAME = "openthoughts"
COLUMNS = {"conversations"}
TEACHER = "deepseek-ai/DeepSeek-R1"
THOUGHT = re.compile(r"<\|begin_of_thought\|>(.*?)(<\|end_of_thought\|>|$)", re.DOTALL)
SOLUTION = re.compile(r"<\|begin_of_solution\|>(.*?)(<\|end_of_solution\|>|$)", re.DOTALL)
DOMAINS = {"math": "math", "code": "code", "science": "text"}  # OpenThoughts3's `domain` column
META = ("source", "difficulty", "domain", "id")


def convert(row: dict, where: str, ctx: Context) -> Imported:
    turns = [t for t in chat_turns(row.get("conversations"), where, "conversations", "from", "value")
             if t["role"] != "system"]
    prompt, reply = split_dialogue(turns, where, "conversations")
    question = prompt[-1]["content"]
    domain = ctx.domain if ctx.domain != "math" else DOMAINS.get(str(row.get("domain")), "math")
    problem = make_problem(where, id=stable_id(NAME, question), problem=question, domain=domain,
                           source=ctx.source, meta={k: row[k] for k in META if row.get(k) is not None})
    teacher = ctx.teacher or TEACHER
    thought, solution = THOUGHT.search(reply), SOLUTION.search(reply)
    if thought is None:
        if THINK_OPEN not in reply and THINK_CLOSE not in reply:
            raise SourceError(f"{where}: field 'conversations': the assistant turn has no <|begin_of_thought|> "
                              "block and no <think> block (expected OpenThoughts' <|begin_of_thought|>…"
                              "<|end_of_thought|> <|begin_of_solution|>…<|end_of_solution|>, or "
                              "<think>…</think> then the answer as in OpenThoughts2 and OpenThoughts3)")
        trace = make_trace(problem, prompt=prompt, completion=reply, teacher=teacher,
                           finish_reason="stop" if THINK_CLOSE in reply else "length")
        return Imported(problem, [trace])
    closed = bool(thought.group(2)) and solution is not None and bool(solution.group(2))
    trace = make_trace(problem, prompt=prompt, completion=reply, teacher=teacher,
                       reasoning=thought.group(1).strip(), answer=solution.group(1).strip() if solution else "",
                       finish_reason="stop" if closed else "length")
    return Imported(problem, [trace])
