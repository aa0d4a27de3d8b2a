"""`executor: ray`: N engine replicas as Ray actors, behind the same Backend interface as one engine.

`run.generate` does not change: it still reads problems lazily, skips keys already written, writes every
trace through one JsonlWriter and resumes by key, so a Ray run keeps every guarantee of a one-machine run.
This backend only decides *where* a request runs. Each replica is an actor holding an ordinary local
backend (vllm with its `num_gpus`, the CPU build, or hf); requests go to it in chunks of `ray.chunk`, at
most two chunks queued per replica, so memory stays flat in the number of problems. Draws come from the
seeded sampler (one random stream per (seed, problem, sample)), so which replica ran a request does not
change its trace.

A replica that dies (node lost, OOM, killed) is restarted by Ray (`ray.max_restarts`) and the calls it was
running or holding run again on the restarted replica; once its restarts are spent the run stops with
the reason. If the driver
dies, the replicas die with it (they belong to its job) and a rerun resumes from the output file.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator

from distill.cluster import connect, replica_options
from distill.config import GenerateConfig
from distill.errors import DistillError
from distill.generation.backends.base import Generated, Request
from distill.generation.backends.local import local_backend

log = logging.getLogger("distill.generation")

_QUEUED_PER_REPLICA = 2  # one chunk running, one waiting: the replica never idles between calls


class Replica:
    """One engine inside a Ray actor (wrapped with `ray.remote` by RayBackend)."""

    def __init__(self, config_json: str) -> None:
        config = GenerateConfig.model_validate_json(config_json)
        _use_only_reserved_cpus(config.ray.num_cpus)
        self.backend = local_backend(config)

    def pid(self) -> int:
        return os.getpid()

    def run(self, requests: list[Request]) -> tuple[int, list[tuple[Request, Generated]]]:
        """Prepare and run one chunk; returns this process's pid (a new pid means a restart) and the results."""
        for request in requests:
            self.backend.prepare(request)
        return os.getpid(), list(self.backend.generate(requests, len(requests)))


def _use_only_reserved_cpus(num_cpus: float) -> None:
    """Run torch on as many threads as the CPUs Ray reserved for this replica.

    Ray passes the share as OMP_NUM_THREADS, but a worker process that started with an OpenMP runtime
    already loaded (vLLM's CPU platform puts torch's libgomp in LD_PRELOAD, and Ray workers inherit it) has
    read its thread count before that, and would use every core: replicas would then fight over cores, and
    their logits (so their seeded draws) would differ from a one-machine run with the same threads."""
    import torch

    torch.set_num_threads(max(1, int(num_cpus)))


class RayBackend:
    def __init__(self, config: GenerateConfig) -> None:
        self.config = config
        self.teacher = config.model
        settings = config.ray
        self.ray, self._connected = connect(settings)
        local = config.model_copy(update={"executor": "local"}, deep=True)
        actor = self.ray.remote(Replica)
        run = f"distill-generate-{os.getpid()}-{id(self):x}"  # names show in `ray list actors`
        self.replicas = [actor.options(name=f"{run}-replica-{i}", **replica_options(settings))
                         .remote(local.model_dump_json()) for i in range(settings.replicas)]
        # Wait for every replica to load its model, and learn its pid: a result from another pid later
        # means Ray restarted that replica.
        self.pids: list[int] = self.ray.get([replica.pid.remote() for replica in self.replicas])
        self.restarts = 0
        self.requeued = 0

    def prepare(self, request: Request) -> None:
        pass  # the replica renders and tokenizes, with the teacher's own tokenizer

    def generate(self, requests: Iterable[Request], max_in_flight: int) -> Iterator[tuple[Request, Generated]]:
        ray = self.ray
        size = self.config.ray.chunk
        source = iter(requests)
        running: dict = {}  # ObjectRef -> (replica index, chunk)
        exhausted = False
        try:
            while True:
                for index, replica in enumerate(self.replicas):
                    while not exhausted and _queued(running, index) < _QUEUED_PER_REPLICA \
                            and _in_flight(running) < max(max_in_flight, size):
                        chunk = [r for _, r in zip(range(size), source)]
                        exhausted = len(chunk) < size
                        if chunk:
                            running[replica.run.remote(chunk)] = (index, chunk)
                if not running:
                    return
                [done], _ = ray.wait(list(running), num_returns=1)
                index, chunk = running.pop(done)
                try:
                    pid, results = ray.get(done)
                except ray.exceptions.RayActorError as exc:
                    raise DistillError(
                        f"ray: replica {index} is gone after {self.config.ray.max_restarts} restarts "
                        f"(ray.max_restarts), running problem {chunk[0].problem_id}: {exc}. "
                        "Rerun to resume; finished traces are kept") from None
                if pid != self.pids[index]:  # Ray restarted it and ran the chunk again
                    self.restarts += 1
                    self.requeued += len(chunk)
                    log.warning("ray: replica %d was restarted; its requests ran again", index)
                self.pids[index] = pid
                yield from results
        finally:
            for ref in running:  # interrupted: drop queued chunks (close() then stops the replicas)
                ray.cancel(ref)

    def describe(self) -> dict[str, int | str]:
        return {"executor": "ray", "replicas": self.config.ray.replicas, "replica_restarts": self.restarts,
                "requeued_requests": self.requeued}

    def close(self) -> None:
        for replica in self.replicas:
            self.ray.kill(replica)
        self.replicas = []
        if self._connected:
            self.ray.shutdown()


def _in_flight(running: dict) -> int:
    return sum(len(chunk) for _, chunk in running.values())


def _queued(running: dict, index: int) -> int:
    return sum(1 for replica, _ in running.values() if replica == index)

