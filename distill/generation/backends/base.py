"""The shape every teacher backend shares: a Request in, what the engine Generated out, and the Backend protocol."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class Request:
    problem_id: str
    sample: int
    messages: list[dict[str, str]]
    key: int  # seeds.request_key(seed, problem_id, sample): its random stream
    prompt_ids: list[int] = field(default_factory=list)  # filled by backends that tokenize locally
    prefilled_think: bool = False  # set by prepare(): the prompt ends inside an opened <think> block


@dataclass
class Generated:
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    reasoning_content: str | None = None


class Backend(Protocol):
    teacher: str  # the model id written into every Trace

    def prepare(self, request: Request) -> None:
        """Render/tokenize the prompt of one request (called before it is queued)."""

    def generate(self, requests: Iterable[Request], max_in_flight: int) -> Iterator[tuple[Request, Generated]]:
        """Run the requests, pulling lazily with at most `max_in_flight` unfinished; yield each with its
        completion as soon as it finishes (in any order)."""

    def close(self) -> None:
        """Release what the backend holds (connections, models); a shared vLLM engine stays up."""
