"""Teacher backends: one request/completion shape, three ways to run a teacher.

A backend pulls `Request`s (one per problem x sample) lazily and yields `(request, Completion)`
pairs as they finish, in any order, so the caller writes each trace as soon as it exists. Backends
know nothing about files, resume or stats; `run.generate` does.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from distill.config import GenerateConfig


@dataclass
class Request:
    problem_id: str
    sample: int
    messages: list[dict[str, str]]
    key: int  # seeds.request_key(seed, problem_id, sample): its random stream
    prompt_ids: list[int] = field(default_factory=list)  # filled by backends that tokenize locally
    prefilled_think: bool = False  # set by prepare(): the prompt ends inside an opened <think> block


@dataclass
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_content: str | None = None


class Backend(Protocol):
    teacher: str  # the model id written into every Trace

    def prepare(self, request: Request) -> None:
        """Render/tokenize the prompt of one request (called before it is queued)."""

    def generate(self, requests: Iterable[Request], max_in_flight: int) -> Iterator[tuple[Request, Completion]]:
        """Run the requests, pulling lazily with at most `max_in_flight` unfinished; yield each with its
        completion as soon as it finishes (in any order)."""

    def close(self) -> None:
        """Release what the backend holds (connections, models); a shared vLLM engine stays up."""


def make_backend(config: GenerateConfig) -> Backend:
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
