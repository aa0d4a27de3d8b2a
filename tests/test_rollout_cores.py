"""distill.rollout.cores: while a draw runs beside the trainer, the engine's scheduler shares its worker's cores and
the trainer keeps to the others; afterwards everything is where it was."""
from __future__ import annotations

import os
import subprocess
import sys

import torch

from distill.rollout.cores import EngineCores


def test_processes_that_are_not_a_vllm_engine_are_left_alone():
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert EngineCores.of([stranger.pid]) is None
        assert EngineCores.of([]) is None
    finally:
        stranger.kill()
        stranger.wait()


def stand_in_scheduler() -> subprocess.Popen:
    """A real process in place of vLLM's engine core: the pinning is applied to a live process's threads."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])


def two_cores() -> tuple[list[int], frozenset[int], frozenset[int]]:
    mine = sorted(os.sched_getaffinity(0))
    assert len(mine) >= 2, f"these tests need two cores to share; this process may use {mine}"
    return mine, frozenset(mine[:1]), frozenset(mine[1:])


def test_trainer_only_pins_the_scheduler_to_the_worker_and_the_trainer_beside_it():
    mine, worker, trainer = two_cores()
    scheduler = stand_in_scheduler()
    threads = torch.get_num_threads()
    try:
        cores = EngineCores(processes=(scheduler.pid,), schedulers=(scheduler.pid,), worker=worker, trainer=trainer)
        with cores.trainer_only() as block:
            assert os.sched_getaffinity(scheduler.pid) == set(worker)
            assert os.sched_getaffinity(0) == set(trainer)
            assert torch.get_num_threads() == len(trainer)
            torch.ones(256, 256) @ torch.ones(256, 256)  # the trainer computes here
            block.widen()  # the draw never ends here: nothing moves
            assert os.sched_getaffinity(0) == set(trainer)
        assert os.sched_getaffinity(0) == set(mine)
        assert os.sched_getaffinity(scheduler.pid) == set(mine)
        assert torch.get_num_threads() == threads
    finally:
        scheduler.kill()
        scheduler.wait()


def test_the_trainer_takes_its_cores_back_once_the_draw_is_done():
    mine, worker, trainer = two_cores()
    scheduler = stand_in_scheduler()
    threads = torch.get_num_threads()
    drawn = [False]
    try:
        cores = EngineCores(processes=(scheduler.pid,), schedulers=(scheduler.pid,), worker=worker, trainer=trainer)
        with cores.trainer_only(until=lambda: drawn[0]) as block:
            block.widen()
            assert os.sched_getaffinity(0) == set(trainer)
            drawn[0] = True
            block.widen()
            assert os.sched_getaffinity(0) == set(mine) and torch.get_num_threads() == threads
            # the scheduler's own cores come back when the block ends
            assert os.sched_getaffinity(scheduler.pid) == set(worker)
        assert os.sched_getaffinity(scheduler.pid) == set(mine)
        assert os.sched_getaffinity(0) == set(mine) and torch.get_num_threads() == threads
    finally:
        scheduler.kill()
        scheduler.wait()


def test_a_scheduler_gone_before_the_block_is_no_error():
    mine = sorted(os.sched_getaffinity(0))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    cores = EngineCores(processes=(gone.pid,), schedulers=(gone.pid,), worker=frozenset(mine[:1]),
                        trainer=frozenset(mine[1:] or mine))
    with cores.trainer_only():
        assert os.sched_getaffinity(0) == set(mine[1:] or mine)
    assert os.sched_getaffinity(0) == set(mine)


def becomes(pid: int, stopped: bool) -> bool:
    """Whether `pid` is (or, within 2 s of a signal just sent, becomes) stopped, or running when not `stopped`."""
    import time

    import psutil

    deadline = time.monotonic() + 2
    while (psutil.Process(pid).status() == psutil.STATUS_STOPPED) != stopped:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_the_engine_is_stopped_between_draws_and_woken_to_close():
    """Between draws the engine's processes are stopped (their spin-wait then takes no core); inside `awake` they
    run; `wake` lets them run for good, before the engine is shut down."""
    _, worker, trainer = two_cores()
    engine = stand_in_scheduler()
    try:
        cores = EngineCores(processes=(engine.pid,), schedulers=(engine.pid,), worker=worker, trainer=trainer)
        with cores.awake():
            assert becomes(engine.pid, stopped=False)
        assert becomes(engine.pid, stopped=True)
        with cores.awake():
            assert becomes(engine.pid, stopped=False)
        assert becomes(engine.pid, stopped=True)
        cores.wake()
        assert becomes(engine.pid, stopped=False)
    finally:
        engine.kill()
        engine.wait()


def test_an_engine_beside_the_trainer_takes_the_lower_half_of_the_cores(monkeypatch):
    from distill.rollout.cores import binding_beside_trainer

    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    assert binding_beside_trainer({0, 1}) == "0"
    assert binding_beside_trainer(set(range(16))) == "0,1,2,3,4,5,6,7"
    assert binding_beside_trainer({4, 2, 7}) == "2"
    assert binding_beside_trainer({3}) is None  # no second core: vLLM's own choice
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0-3")
    assert binding_beside_trainer(set(range(16))) is None  # the user's binding wins
