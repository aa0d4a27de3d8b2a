"""OpenThoughts-114k and Bespoke-Stratos-17k: `system` + `conversations` [{from, value}] where the assistant
value is `<|begin_of_thought|>…<|end_of_thought|>` then `<|begin_of_solution|>…<|end_of_solution|>`.

The thought block becomes the reasoning and the solution block the answer, in R1's `<think>` form. The
sets' long system prompt only explains those custom tags, which the `<think>` form replaces, so it is
dropped (R1 trains with no system prompt). No gold answers: filter with `filter.verify=false`.
"""
from __future__ import annotations

import re

from distill.importers.common import Context, Imported, make_problem, make_trace
from distill.importers.messages import chat_turns, split_dialogue
from distill.problems import stable_id
from distill.sources import SourceError

NAME = "openthoughts"
COLUMNS = {"conversations"}
TEACHER = "deepseek-ai/DeepSeek-R1"
THOUGHT = re.compile(r"<\|begin_of_thought\|>(.*?)(<\|end_of_thought\|>|$)", re.DOTALL)
SOLUTION = re.compile(r"<\|begin_of_solution\|>(.*?)(<\|end_of_solution\|>|$)", re.DOTALL)


def convert(row: dict, where: str, ctx: Context) -> Imported:
    turns = [t for t in chat_turns(row.get("conversations"), where, "conversations", "from", "value")
             if t["role"] != "system"]
    prompt, reply = split_dialogue(turns, where, "conversations")
    thought, solution = THOUGHT.search(reply), SOLUTION.search(reply)
    if thought is None:
        raise SourceError(f"{where}: field 'conversations': the assistant turn has no <|begin_of_thought|> block "
                          "(expected OpenThoughts' <|begin_of_thought|>…<|end_of_thought|> "
                          "<|begin_of_solution|>…<|end_of_solution|>)")
    closed = bool(thought.group(2)) and solution is not None and bool(solution.group(2))
    question = prompt[-1]["content"]
    problem = make_problem(where, id=stable_id(NAME, question), problem=question, domain=ctx.domain,
                           source=ctx.source)
    trace = make_trace(problem, prompt=prompt, completion=reply, teacher=ctx.teacher or TEACHER,
                       reasoning=thought.group(1).strip(), answer=solution.group(1).strip() if solution else "",
                       finish_reason="stop" if closed else "length")
    return Imported(problem, [trace])
