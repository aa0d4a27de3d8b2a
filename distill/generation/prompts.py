"""Problem -> chat messages -> the teacher's prompt text, following R1's conventions.

R1 uses no system prompt, asks math problems for the final answer in \\boxed{}, and starts the assistant
turn with "<think>\\n" so the model reasons first. The per-domain user-turn templates live in the
recipe (`prompts.templates`), formatted with `str.format`: `{problem}`, and `{choices}` for mcq.
"""
from __future__ import annotations

import string
from typing import Any

from distill.chat_format import PREFILL, THINK_OPEN
from distill.config import PromptConfig
from distill.errors import DistillError
from distill.records import Problem


def format_choices(choices: list[str] | None) -> str:
    return "\n".join(f"{string.ascii_uppercase[i]}. {c}" for i, c in enumerate(choices or []))


def user_text(problem: Problem, prompts: PromptConfig) -> str:
    template = prompts.templates.get(problem.domain)
    if template is None:
        known = ", ".join(sorted(prompts.templates)) or "none"
        raise DistillError(f"problem '{problem.id}': no prompt template for domain '{problem.domain}' "
                           f"(prompts.templates has: {known}); add one to the recipe")
    try:
        return template.format(problem=problem.problem, choices=format_choices(problem.choices))
    except (KeyError, IndexError, ValueError) as exc:
        raise DistillError(
            f"prompts.templates.{problem.domain}: cannot format {template[:60]!r}... ({exc!r}); "
            "only {problem} and {choices} are filled in, write other braces doubled: {{ }}") from None


def build_messages(problem: Problem, prompts: PromptConfig) -> list[dict[str, str]]:
    """The chat messages sent to the teacher: an optional system turn, then the templated user turn."""
    messages = []
    if prompts.system_prompt:
        messages.append({"role": "system", "content": prompts.system_prompt})
    messages.append({"role": "user", "content": user_text(problem, prompts)})
    return messages


def render_prompt(tokenizer: Any, messages: list[dict[str, str]], prompts: PromptConfig) -> str:
    """The teacher's own chat template applied, plus the '<think>\\n' prefill when asked for.

    Templates of reasoning models that already open the think block (DeepSeek-R1's newer template,
    Qwen3 with thinking on) are left as they are rather than given a second tag.
    """
    if getattr(tokenizer, "chat_template", None) is None:
        raise DistillError(f"{getattr(tokenizer, 'name_or_path', 'the teacher')}: its tokenizer has no chat "
                           "template; give a chat model, or add a template to its tokenizer_config.json")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                         **prompts.chat_template_kwargs)
    if prompts.prefill_think and not template_opens_think(text):
        text += PREFILL
    return text


def template_opens_think(text: str) -> bool:
    """True when a rendered prompt already ends inside an opened <think> block."""
    return text.rstrip().endswith(THINK_OPEN)
