"""distill.pool: the one pool of the filter, eval's judge, the RL rewards and the verifiers.

A task that overruns its phase budget is a Failure and the pool goes on; a worker that dies is replaced;
results come back in input order; settings reach the task function bound to it, not through a global.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from functools import partial

import pytest

from distill.config import FilterConfig
from distill.errors import DistillError
from distill.pool import Failure, Retry, SupervisedPool, open_pool, phase


@dataclass(frozen=True)
class Scale:
    factor: int


_UNSET = object()
GLOBAL = _UNSET  # stays unset in every worker: the settings come with the task function


def scaled(task: tuple[str, int], settings: Scale) -> tuple[int, int, bool]:
    """(value * factor, this worker's pid, whether a module global was touched)."""
    kind, value = task
    phase("work", 1.0)
    if kind == "sleep":
        time.sleep(30)
    if kind == "die":
        os._exit(7)
    return value * settings.factor, os.getpid(), GLOBAL is not _UNSET


def value_of(failure_value: int):
    return lambda task, failure: (failure_value, 0, False)


def test_results_come_back_in_input_order_with_the_settings_bound_to_the_task():
    with open_pool(partial(scaled, settings=Scale(3)), workers=2, batch=2) as pool:
        results = list(pool.imap((("ok", i) for i in range(40)), value_of(-1)))
        assert pool.size == 2 and pool.restarts == 0
    assert [r[0] for r in results] == [3 * i for i in range(40)]
    assert not any(r[2] for r in results)  # no module global carried the settings
    assert len({r[1] for r in results}) <= 2


def test_a_task_over_its_budget_is_a_failure_and_the_pool_goes_on():
    failures: list[tuple[tuple, Failure]] = []

    def on_failure(task, failure):
        failures.append((task, failure))
        return (-1, 0, False)

    started = time.monotonic()
    with open_pool(partial(scaled, settings=Scale(2)), workers=1) as pool:
        results = list(pool.imap([("ok", 1), ("sleep", 2), ("ok", 3)], on_failure))
        restarts = pool.restarts
    assert time.monotonic() - started < 20  # killed at its 1 s budget, not after the 30 s sleep
    assert [r[0] for r in results] == [2, -1, 6]
    [(task, failure)] = failures
    assert task == ("sleep", 2) and failure.phase == "work" and failure.killed
    assert "overran its time budget" in failure.reason
    assert restarts == 1


def test_a_worker_that_dies_is_replaced_and_its_task_can_be_retried():
    def on_failure(task, failure):
        assert failure.killed and "exit code 7" in failure.reason
        return Retry(("ok", 100))

    with SupervisedPool(partial(scaled, settings=Scale(1)), 1) as pool:
        results = list(pool.imap([("ok", 1), ("die", 2), ("ok", 3)], on_failure))
        assert pool.restarts == 1
    assert [r[0] for r in results] == [1, 100, 3]
    assert results[0][1] != results[2][1]  # a fresh worker ran the rest


def test_an_error_is_a_failure_without_a_kill():
    seen: list[Failure] = []

    def on_failure(task, failure):
        seen.append(failure)
        return (0, 0, False)

    with open_pool(partial(scaled, settings=None), workers=1) as pool:  # settings.factor raises
        results = list(pool.imap([("ok", 1), ("ok", 2)], on_failure))
        assert pool.restarts == 0
    assert results == [(0, 0, False), (0, 0, False)]
    assert len(seen) == 2
    assert all(not f.killed and f.phase == "work" and "AttributeError" in f.reason for f in seen)


def test_the_executor_is_chosen_in_one_place():
    pool = open_pool(partial(scaled, settings=Scale(1)), workers=0)
    try:
        assert isinstance(pool, SupervisedPool) and pool.size == len(os.sched_getaffinity(0))
    finally:
        pool.close()
    with pytest.raises(DistillError, match="ray settings"):
        open_pool(partial(scaled, settings=Scale(1)), executor="ray")
    assert FilterConfig().executor == "local"  # the filter's default: this machine's cores
