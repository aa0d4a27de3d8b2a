"""Where verification runs: this machine's cores (SupervisedPool) or a Ray cluster's (RayPool).

`open_pool` is the one place the choice is made (`filter.executor`). RayPool has SupervisedPool's interface
(`imap` in input order with `on_failure`, `restarts`, `cpu_seconds`, a context manager) and is built from
it: each of `ray.replicas` actors runs a SupervisedPool over its own `ray.num_cpus` cores, so every task
keeps its phases, time budgets and kill-and-retry on whichever node it lands. The driver sends chunks of
`ray.chunk` tasks, at most two per actor, and yields results in input order, so memory stays flat. An
actor that dies is restarted by Ray and the chunks it held run again there.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Self

from distill.cluster import connect, replica_options
from distill.config import FilterConfig
from distill.errors import DistillError
from distill.verify.workers import Failure, Retry, SupervisedPool

_QUEUED_PER_ACTOR = 2


def open_pool(config: FilterConfig, fn: Callable, *, initializer: Callable, initargs: tuple,
              preload: list[str] | None = None):
    """The verification pool the filter's config asks for (`preload`: modules each worker imports warm)."""
    if config.executor == "ray":
        return RayPool(config, fn, initializer=initializer, initargs=initargs, preload=preload)
    workers = config.workers or len(os.sched_getaffinity(0))
    return SupervisedPool(fn, workers, initializer=initializer, initargs=initargs, preload=preload)


class VerifierActor:
    """A SupervisedPool on one node's share of CPUs (wrapped with `ray.remote` by RayPool)."""

    def __init__(self, fn: Callable, workers: int, initializer: Callable, initargs: tuple,
                 preload: list[str] | None = None) -> None:
        self.pool = SupervisedPool(fn, workers, initializer=initializer, initargs=initargs, preload=preload)

    def run(self, tasks: list, on_failure: Callable[[Any, Failure], Any | Retry]) -> tuple[list, int, float]:
        results = list(self.pool.imap(tasks, on_failure))
        return results, self.pool.restarts, self.pool.cpu_seconds

    def shutdown(self) -> None:
        self.pool.close()


class RayPool:
    def __init__(self, config: FilterConfig, fn: Callable, *, initializer: Callable, initargs: tuple,
                 preload: list[str] | None = None) -> None:
        settings = config.ray
        self.ray, self._connected = connect(settings)
        self.chunk = settings.chunk
        self.size = settings.replicas * max(1, int(settings.num_cpus))
        actor = self.ray.remote(VerifierActor).options(**replica_options(settings))
        self.actors = [actor.remote(fn, max(1, int(settings.num_cpus)), initializer, initargs, preload)
                       for _ in range(settings.replicas)]
        self._restarts = [0] * len(self.actors)
        self._cpu = [0.0] * len(self.actors)

    @property
    def restarts(self) -> int:
        return sum(self._restarts)

    @property
    def cpu_seconds(self) -> float:
        return sum(self._cpu)

    def imap(self, tasks: Iterable, on_failure: Callable[[Any, Failure], Any | Retry],
             window: int | None = None) -> Iterator:
        """Yield fn(task) for every task, in input order (`window` is SupervisedPool's; chunks bound memory here)."""
        ray = self.ray
        source = iter(tasks)
        running: dict = {}  # ObjectRef -> (actor index, chunk number)
        finished: dict[int, list] = {}
        submitted = next_out = 0
        exhausted = False
        try:
            while True:
                for index, actor in enumerate(self.actors):
                    while not exhausted and sum(1 for a, _ in running.values() if a == index) < _QUEUED_PER_ACTOR:
                        chunk = [t for _, t in zip(range(self.chunk), source)]
                        exhausted = len(chunk) < self.chunk
                        if chunk:
                            running[actor.run.remote(chunk, on_failure)] = (index, submitted)
                            submitted += 1
                while next_out in finished:
                    yield from finished.pop(next_out)
                    next_out += 1
                if not running:
                    return
                [done], _ = ray.wait(list(running), num_returns=1)
                index, number = running.pop(done)
                try:
                    results, restarts, cpu = ray.get(done)
                except ray.exceptions.RayActorError as exc:
                    raise DistillError(f"ray: verifier actor {index} is gone after its restarts "
                                       f"(ray.max_restarts): {exc}. Rerun to resume the filter") from None
                self._restarts[index], self._cpu[index] = restarts, cpu
                finished[number] = results
        finally:
            for ref in running:
                ray.cancel(ref)

    def close(self) -> None:
        for actor in self.actors:
            with contextlib.suppress(Exception):  # a dead actor has nothing left to close
                self.ray.get(actor.shutdown.remote(), timeout=10)
            self.ray.kill(actor)
        self.actors = []
        if self._connected:
            self.ray.shutdown()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
