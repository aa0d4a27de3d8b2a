"""The backend that runs in this process: vllm, openai or hf, as `config.backend` says.

Below both `make_backend` (which may wrap it in Ray replicas) and the Ray replica (which runs one of these
inside its actor), so neither imports the other's module.
"""
from __future__ import annotations

from distill.config import GenerateConfig
from distill.generation.backends.base import Backend


def local_backend(config: GenerateConfig) -> Backend:
    # Imported here, not above: each backend loads its own heavy stack (vllm, torch, openai).
    if config.backend == "vllm":
        from distill.generation.backends.vllm_backend import VLLMBackend
        return VLLMBackend(config)
    if config.backend == "openai":
        from distill.generation.backends.openai_backend import OpenAIBackend
        return OpenAIBackend(config)
    from distill.generation.backends.hf_backend import HFBackend
    return HFBackend(config)
