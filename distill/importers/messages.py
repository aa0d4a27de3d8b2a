"""Chat `messages` with the reasoning in `<think>…</think>`: open-r1/Mixture-of-Thoughts and most R1 distillation
sets (columns: messages [{role, content}], num_tokens, source).

The last user turn is the problem, the assistant turn after it the trace; a system turn, if any, is kept in
the prompt (the student then trains with it, as the set intends). An assistant turn without tags goes
through the plain chain-of-thought splitter. These sets carry no gold answer: filter them with
`filter.verify=false`, or join answers in with a field map.
"""
from __future__ import annotations

from distill.importers.common import Context, Imported, make_problem, make_trace
from distill.problems import stable_id
from distill.sources import SourceError

NAME = "messages"
COLUMNS = {"messages"}
TEACHER = "deepseek-ai/DeepSeek-R1"


def chat_turns(turns: object, where: str, column: str, role_key: str, content_key: str) -> list[dict[str, str]]:
    if not isinstance(turns, (list, tuple)) or not turns:
        raise SourceError(f"{where}: field '{column}': expected a list of chat turns, got "
                          f"{type(turns).__name__ if turns is not None else 'nothing'}")
    out = []
    for i, turn in enumerate(turns):
        role = turn.get(role_key) if isinstance(turn, dict) else None
        content = turn.get(content_key) if isinstance(turn, dict) else None
        if not isinstance(role, str) or not isinstance(content, str):
            raise SourceError(f"{where}: field '{column}[{i}]': expected {{'{role_key}': ..., '{content_key}': "
                              f"text}}, got {turn!r:.80}")
        out.append({"role": {"human": "user", "gpt": "assistant"}.get(role, role), "content": content})
    return out


def split_dialogue(turns: list[dict[str, str]], where: str, column: str) -> tuple[list[dict[str, str]], str]:
    """(prompt turns up to the last user turn, the assistant reply after it)."""
    last_user = max((i for i, t in enumerate(turns) if t["role"] == "user"), default=None)
    if last_user is None or last_user + 1 >= len(turns) or turns[last_user + 1]["role"] != "assistant":
        roles = [t["role"] for t in turns]
        raise SourceError(f"{where}: field '{column}': expected a user turn followed by an assistant turn, got the "
                          f"roles {roles}")
    return turns[:last_user + 1], turns[last_user + 1]["content"]


def convert(row: dict, where: str, ctx: Context) -> Imported:
    turns = chat_turns(row.get("messages"), where, "messages", "role", "content")
    prompt, reply = split_dialogue(turns, where, "messages")
    question = prompt[-1]["content"]
    problem = make_problem(where, id=row.get("id") or stable_id(NAME, question), problem=question,
                           domain=ctx.domain, answer=row.get("answer"), source=ctx.source,
                           meta={k: row[k] for k in ("source", "num_tokens") if row.get(k) is not None})
    return Imported(problem, [make_trace(problem, prompt=prompt, completion=reply, teacher=ctx.teacher or TEACHER)])
