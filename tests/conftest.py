"""Shared fixtures: offline hub, the bundled models, and one vLLM engine for the whole session."""
from __future__ import annotations

import os

# Before anything imports transformers or vllm: never reach a hub and keep vLLM's CPU KV cache small.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest

from distill.config import VLLMConfig
from distill.models import resolve_model

# The settings of the suite's one engine. Tests that generate through vLLM pass these same settings, so
# shared_llm hands back that engine instead of starting another. Eager mode: torch.compile would add
# ~50 s to the start and the suite generates too little to win it back.
# float32: in bfloat16 a logit depends on the batch layout (so on what ran before in the shared engine),
# which can flip a seeded draw near a boundary; float32 logits repeat, so same seed means same traces.
SUITE_VLLM = VLLMConfig(kv_cache_gib=2, max_model_len=2048, enforce_eager=True, dtype="float32")


@pytest.fixture(scope="session")
def smollm2() -> str:
    """Folder of the bundled SmolLM2-135M-Instruct (converted from its GGUF once, then cached)."""
    return resolve_model("bundled:smollm2-135m-instruct")


@pytest.fixture(scope="session")
def gemma3() -> str:
    """Folder of the bundled Gemma 3 270M base (assembled and converted once per machine: ~3 min, then cached)."""
    return resolve_model("bundled:gemma3-270m")


@pytest.fixture(scope="session")
def tiny_model() -> str:
    """Folder of a 2-layer random Llama with the SmolLM2 tokenizer."""
    return resolve_model("bundled:tiny")


@pytest.fixture(scope="session")
def vllm_engine(smollm2):
    """The one vLLM engine (SmolLM2, SUITE_VLLM) the suite shares; ~20 s to start on the CPU."""
    from distill.generation.engine import shared_llm, shutdown_llm

    yield shared_llm(smollm2, SUITE_VLLM, seed=0)
    # Shut down while pytest's streams are open; vLLM's exit hook would log into closed files.
    shutdown_llm()
