"""The R1 reasoning format in one place: the think tags, the prefill, and the assistant turn SFT trains on.

Generation prefills `<think>\\n` and splits completions at the tags, the filter checks them, SFT trains on
`assistant_turn(...)` and `distill export` writes the very same `messages`, so the exported dataset is
byte for byte what `distill sft` trains on.
"""
from __future__ import annotations

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
PREFILL = THINK_OPEN + "\n"  # R1 starts the assistant turn inside the think block


def assistant_turn(reasoning: str, answer: str) -> str:
    """The SFT target, with the reasoning and answer exactly as the trace holds them."""
    return f"{PREFILL}{reasoning}\n{THINK_CLOSE}\n\n{answer}"


def sft_messages(prompt: list[dict[str, str]], reasoning: str, answer: str) -> list[dict[str, str]]:
    """The conversation one kept trace becomes: its prompt, then the assistant turn."""
    return [{"role": m["role"], "content": m["content"]} for m in prompt] + [
        {"role": "assistant", "content": assistant_turn(reasoning, answer)}]
