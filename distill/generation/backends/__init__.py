"""Teacher backends: one request/completion shape, three ways to run a teacher.

A backend pulls `Request`s (one per problem x sample) lazily and yields `(request, Completion)`
pairs as they finish, in any order, so the caller writes each trace as soon as it exists. Backends
know nothing about files, resume or stats; `run.generate` does.
"""
from __future__ import annotations

from distill.config import GenerateConfig
from distill.generation.backends.base import Backend, Completion, Request

__all__ = ["Backend", "Completion", "Request", "make_backend"]


def make_backend(config: GenerateConfig) -> Backend:
    # Imported here, not above: each backend loads its own heavy stack (vllm, torch, openai, ray).
    if config.executor == "ray":  # replicas of the backend below, each on its own share of a Ray cluster
        from distill.generation.ray_executor import RayBackend
        return RayBackend(config)
    if config.backend == "vllm":
        from distill.generation.backends.vllm_backend import VLLMBackend
        return VLLMBackend(config)
    if config.backend == "openai":
        from distill.generation.backends.openai_backend import OpenAIBackend
        return OpenAIBackend(config)
    from distill.generation.backends.hf_backend import HFBackend
    return HFBackend(config)
