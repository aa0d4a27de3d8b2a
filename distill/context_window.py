"""Refuse a recipe whose SFT `max_length` is longer than the student's context window, before loading weights.

The check reads only the model's config.json (`max_position_embeddings`): a 4k model (Qwen2.5-Math) asked to
train on 16k rows would otherwise load tens of GB of weights and then fail, or silently learn nothing past 4k.
A model whose config cannot be read offline is not checked here; loading it reports that itself.
"""
from __future__ import annotations

from distill.errors import DistillError


def context_window(model: str) -> int | None:
    """max_position_embeddings from the model's config, or None when the config cannot be read."""
    from distill.models import resolve_model

    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(resolve_model(model))
    except (OSError, ValueError, DistillError):
        return None
    config = getattr(config, "text_config", None) or config
    return getattr(config, "max_position_embeddings", None)


def check_context_window(model: str, max_length: int) -> None:
    window = context_window(model)
    if window is not None and max_length > window:
        raise DistillError(
            f"sft.max_length is {max_length} but {model} has a context window of {window} tokens "
            f"(max_position_embeddings). Lower sft.max_length to {window} or less (rows over it are dropped or "
            "truncated per sft.overlong), or pick a long-context variant of the model (for Qwen2.5-Math, "
            "open-r1/Qwen2.5-Math-7B-RoPE-300k, its rope_theta raised for 32k traces).")
