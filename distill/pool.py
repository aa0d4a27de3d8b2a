"""The one process pool of distill: tasks with hard time budgets, on this machine's cores or a Ray cluster's.

Every stage that runs untrusted or unbounded work per record (the filter's checks, eval's judge, the RL
rewards, the verifiers' own math guard) runs it here, with one model of tasks and failures:

  - `open_pool(fn, workers=, executor=, ray=, preload=, batch=)` is the one place that picks local
    processes (`SupervisedPool`) or Ray actors (`RayPool`, each a SupervisedPool on its node's share);
  - `pool.imap(tasks, on_failure)` yields fn(task) for every task, in input order;
  - a task announces its phases (`phase("verify", 6.0)`); the parent SIGKILLs a worker whose phase outlives
    its budget (or that dies), starts a fresh one, and asks `on_failure(task, Failure)` for a final result
    or a `Retry` (the task to run again, e.g. with that phase skipped);
  - settings reach the workers bound to `fn` (`functools.partial(fn, settings=...)`): pickled once when a
    worker starts, never a module global.

multiprocessing.Pool and ProcessPoolExecutor cannot stop one running task: a sympy simplification stuck
in C, or a check with an infinite loop, would hang the whole run. Here each worker runs one task at a
time (from a small batch) under its phase's budget. Results come back in input order, with at most
`window` tasks in flight so memory stays flat on any input size.

Workers come from the forkserver (a clean process that imported `preload` once), so they start in
milliseconds, inherit no threads or GPU state from the caller, and never re-import torch. This module knows
no stage: callers name their own modules to preload.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import resource
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

from distill.errors import DistillError

if TYPE_CHECKING:
    from distill.config import RayConfig

T = TypeVar("T")
R = TypeVar("R")

_connection: Connection | None = None  # set inside a worker: where phase() reports to
_current: int | None = None  # inside a worker: the index of the task running now


def phase(name: str, budget_s: float) -> None:
    """Inside a pool task: start a phase that must end within `budget_s` seconds. No-op elsewhere."""
    if _connection is not None:
        _connection.send(("phase", _current, name, float(budget_s)))


@dataclass(frozen=True)
class Failure:
    phase: str
    reason: str  # e.g. "no result within 6 s (worker killed)" or the traceback of an exception
    killed: bool  # the worker was killed (timeout or crash) rather than the task raising


@dataclass(frozen=True)
class Retry(Generic[T]):
    task: T


def _worker_main(conn: Connection, fn: Callable[[Any], Any], memory_limit_mb: int | None) -> None:
    global _connection, _current
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if memory_limit_mb:
        # Soft limit only: a pathological expression gets MemoryError instead of eating the machine,
        # and sandboxed children may still set their own limits.
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit_mb * 1024 * 1024, hard))
    _connection = conn
    while True:
        try:
            batch = conn.recv()
        except (EOFError, OSError):
            return
        if batch is None:
            return
        for index, task in batch:
            _current = index
            try:
                result = fn(task)
            except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
                conn.send(("error", index, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"))
                continue
            conn.send(("done", index, result))


class _Worker:
    """The parent's handle on one worker: its batch of tasks and the deadline of the running one."""

    def __init__(self, ctx, target_args: tuple, start_budget_s: float):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child, *target_args), daemon=True)
        self.process.start()
        child.close()
        self.start_budget_s = start_budget_s
        self.pending: deque[tuple[int, Any]] = deque()  # assigned, not finished; the first is running
        self.phase = "start"
        self.deadline = 0.0

    def assign(self, batch: list[tuple[int, Any]]) -> None:
        # Only an idle worker gets a batch, so it is blocked in recv() and this send never blocks us.
        self.pending.extend(batch)
        self._next()
        self.conn.send(batch)

    def _next(self) -> None:
        self.phase = "start"
        self.deadline = time.monotonic() + self.start_budget_s

    def finish(self, index: int) -> tuple[int, Any]:
        finished = self.pending.popleft()
        assert finished[0] == index, (finished[0], index)
        if self.pending:
            self._next()
        return finished

    def cpu_seconds(self) -> float:
        """User + system CPU time so far (Linux /proc), for throughput accounting."""
        try:
            with open(f"/proc/{self.process.pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        if self.process.is_alive():
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.join()
        self.conn.close()


class SupervisedPool(Generic[T, R]):
    """`workers` processes running `fn(task)`; see the module docstring.

    Tasks go out in batches of up to `batch` (one round trip per batch: on a loaded machine the parent
    is slow to be scheduled, and a worker waiting for its next task wastes its core); each task in a batch
    still has its own phases and budgets, and when one is killed the rest of its batch is handed out again.
    The window of tasks in flight is wide (16 batches a worker) because results leave in input order: with
    a narrow one, a single slow trace at the head stalls every other worker (measured on MATH-500 traces,
    2 workers: window 32 -> 2.93 s, window 256 -> 2.76 s, batch 1 -> 3.41 s; bench/filter.py).
    """

    def __init__(self, fn: Callable[[T], R], workers: int, *, start_budget_s: float = 60.0,
                 memory_limit_mb: int | None = 4096, preload: Sequence[str] = (), batch: int = 8):
        self.ctx = mp.get_context("forkserver")
        self.ctx.set_forkserver_preload(list(preload))
        self.target_args = (fn, memory_limit_mb)
        self.start_budget_s = start_budget_s
        self.size = max(1, workers)
        self.batch = max(1, batch)
        self.workers: list[_Worker] = []
        self.restarts = 0
        self.retired_cpu_s = 0.0  # CPU time of workers already gone

    def _spawn(self) -> _Worker:
        worker = _Worker(self.ctx, self.target_args, self.start_budget_s)
        self.workers.append(worker)
        return worker

    @property
    def cpu_seconds(self) -> float:
        """CPU time the workers have used so far, including replaced ones."""
        return self.retired_cpu_s + sum(w.cpu_seconds() for w in self.workers)

    def _replace(self, worker: _Worker) -> None:
        self.retired_cpu_s += worker.cpu_seconds()
        worker.kill()
        self.workers.remove(worker)
        self.restarts += 1

    def imap(self, tasks: Iterable[T], on_failure: Callable[[T, Failure], R | Retry[T]],
             window: int | None = None) -> Iterator[R]:
        """Yield fn(task) for every task, in input order."""
        window = window or self.size * self.batch * 16
        source = iter(enumerate(tasks))
        exhausted = False
        retries: deque[tuple[int, T]] = deque()
        done: dict[int, R] = {}
        next_out = 0
        submitted = 0
        while True:
            while next_out in done:
                yield done.pop(next_out)
                next_out += 1
            idle = [w for w in self.workers if not w.pending]
            while len(self.workers) < self.size:
                idle.append(self._spawn())
            for worker in idle:
                # Small batches while the window is short, so every worker gets a share.
                room = max(1, (window - (submitted - next_out)) // self.size)
                batch: list[tuple[int, T]] = []
                while len(batch) < min(self.batch, room):
                    if retries:
                        batch.append(retries.popleft())
                        continue
                    if exhausted or submitted - next_out >= window:
                        break
                    try:
                        batch.append(next(source))
                    except StopIteration:
                        exhausted = True
                        break
                    submitted += 1
                if batch:
                    worker.assign(batch)
            busy = [w for w in self.workers if w.pending]
            if not busy:
                if exhausted and not retries and next_out >= submitted:
                    return
                continue
            timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready = wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=timeout)
            for worker in busy:
                for index, task, outcome in self._poll(worker, worker.conn in ready or worker.process.sentinel in ready):
                    if isinstance(outcome, Failure):
                        decision = on_failure(task, outcome)
                        if isinstance(decision, Retry):
                            retries.append((index, decision.task))
                        else:
                            done[index] = decision
                    else:
                        done[index] = outcome[0]
                if not worker.process.is_alive() or (worker.pending and time.monotonic() >= worker.deadline):
                    self._fail_running(worker, retries, on_failure, done)

    def _poll(self, worker: _Worker, ready: bool) -> list[tuple[int, Any, Any]]:
        """Drain one worker's messages: (index, task, (result,) or Failure) for each task that ended."""
        ended = []
        while ready and worker.conn.poll():
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                break
            kind, index = message[0], message[1]
            if kind == "phase":
                if worker.pending and worker.pending[0][0] == index:
                    worker.phase = message[2]
                    worker.deadline = time.monotonic() + message[3]
                continue
            failed_phase = worker.phase
            _, task = worker.finish(index)
            ended.append((index, task, (message[2],) if kind == "done" else Failure(failed_phase, message[2], False)))
        return ended

    def _fail_running(self, worker: _Worker, retries: deque, on_failure: Callable, done: dict) -> None:
        """Kill a worker whose running task overran (or that died); the rest of its batch goes out again."""
        if worker.process.is_alive():
            reason = f"phase '{worker.phase}' overran its time budget (worker killed)"
        else:
            reason = f"worker died (exit code {worker.process.exitcode}) in phase '{worker.phase}'"
        failure = Failure(worker.phase, reason, killed=True)
        pending = list(worker.pending)
        self._replace(worker)
        retries.extendleft(reversed(pending[1:]))
        if pending:
            index, task = pending[0]
            decision = on_failure(task, failure)
            if isinstance(decision, Retry):
                retries.append((index, decision.task))
            else:
                done[index] = decision

    def close(self) -> None:
        for worker in self.workers:
            if not worker.pending and worker.process.is_alive():
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
        self.retired_cpu_s += sum(w.cpu_seconds() for w in self.workers)
        deadline = time.monotonic() + 2.0
        for worker in self.workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            worker.kill()
        self.workers.clear()

    def __enter__(self) -> SupervisedPool[T, R]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ------------------------------------------------------------------------------------------ the cluster
_QUEUED_PER_ACTOR = 2


class PoolActor:
    """A SupervisedPool on one node's share of CPUs (wrapped with `ray.remote` by RayPool)."""

    def __init__(self, fn: Callable, workers: int, preload: Sequence[str] = (), batch: int = 8) -> None:
        self.pool = SupervisedPool(fn, workers, preload=preload, batch=batch)

    def run(self, tasks: list, on_failure: Callable[[Any, Failure], Any | Retry]) -> tuple[list, int, float]:
        results = list(self.pool.imap(tasks, on_failure))
        return results, self.pool.restarts, self.pool.cpu_seconds

    def shutdown(self) -> None:
        self.pool.close()


class RayPool:
    """SupervisedPool's interface (`imap` in input order with `on_failure`, `size`, `restarts`, `cpu_seconds`,
    a context manager) over a Ray cluster: each of `ray.replicas` actors runs a SupervisedPool over its own
    `ray.num_cpus` cores, so every task keeps its phases, time budgets and kill-and-retry on whichever node it
    lands. The driver sends chunks of `ray.chunk` tasks, at most two per actor, and yields results in input
    order, so memory stays flat. An actor that dies is restarted by Ray and the chunks it held run again there.
    """

    def __init__(self, fn: Callable, settings: RayConfig, *, preload: Sequence[str] = (), batch: int = 8) -> None:
        from distill.cluster import connect, replica_options

        self.ray, self._connected = connect(settings)
        self.chunk = settings.chunk
        per_actor = max(1, int(settings.num_cpus))
        self.size = settings.replicas * per_actor
        actor = self.ray.remote(PoolActor).options(**replica_options(settings))
        self.actors = [actor.remote(fn, per_actor, list(preload), batch) for _ in range(settings.replicas)]
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
                    raise DistillError(f"ray: pool actor {index} is gone after its restarts "
                                       f"(ray.max_restarts): {exc}. Rerun to resume") from None
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


Pool = SupervisedPool | RayPool


def open_pool(fn: Callable, *, workers: int = 0, executor: str = "local", ray: RayConfig | None = None,
              preload: Sequence[str] = (), batch: int = 8) -> Pool:
    """The pool a caller's settings ask for: `workers` local processes (0 = one per core), or with
    executor="ray" the actors `ray` describes. `preload`: modules each worker's forkserver imports warm."""
    if executor == "ray":
        if ray is None:
            raise DistillError("executor 'ray' needs its ray settings")
        return RayPool(fn, ray, preload=preload, batch=batch)
    return SupervisedPool(fn, workers or len(os.sched_getaffinity(0)), preload=preload, batch=batch)
