"""Teacher backends: one request/completion shape, three ways to run a teacher.

A backend pulls `Request`s (one per problem x sample) lazily and yields `(request, Generated)`
pairs as they finish, in any order, so the caller writes each trace as soon as it exists. Backends
know nothing about files, resume or stats; `run.generate` does.
"""
from __future__ import annotations

from distill.config import GenerateConfig
from distill.generation.backends.base import Backend, Generated, Request
from distill.generation.backends.local import local_backend

__all__ = ["Backend", "Generated", "Request", "make_backend"]


def make_backend(config: GenerateConfig) -> Backend:
    if config.executor == "ray":  # replicas of the local backend, each on its own share of a Ray cluster
        from distill.generation.ray_executor import RayBackend  # imported here: it loads ray
        return RayBackend(config)
    return local_backend(config)
