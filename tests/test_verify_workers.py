"""distill.pool.SupervisedPool: hard per-phase time budgets (even for code stuck in C), retries, crashes, input order."""
from __future__ import annotations

import os
import time

from distill.pool import Failure, Retry, SupervisedPool, phase


def square_or_hang(task: tuple[str, int]) -> int:
    kind, value = task
    phase("compute", 1.0)
    if kind == "hang_in_c":
        sum(range(10 ** 12))  # one C call: no signal handler or alarm can interrupt it
    if kind == "crash":
        os._exit(3)
    if kind == "raise":
        raise ValueError(f"bad value {value}")
    return value * value


def test_results_come_back_in_input_order_on_two_workers():
    with SupervisedPool(square_or_hang, 2) as pool:
        results = list(pool.imap((("ok", i) for i in range(50)), lambda task, failure: -1))
    assert results == [i * i for i in range(50)]


def test_a_task_stuck_in_c_is_killed_at_its_budget_and_the_pool_goes_on():
    failures: list[Failure] = []

    def on_failure(task, failure):
        failures.append(failure)
        return -1

    tasks = [("ok", 2), ("hang_in_c", 3), ("ok", 4), ("crash", 5), ("raise", 6), ("ok", 7)]
    start = time.monotonic()
    with SupervisedPool(square_or_hang, 2) as pool:
        results = list(pool.imap(tasks, on_failure))
        restarts = pool.restarts
    assert time.monotonic() - start < 15
    assert results == [4, -1, 16, -1, -1, 49]
    kinds = sorted((f.phase, f.killed) for f in failures)
    assert kinds == [("compute", False), ("compute", True), ("compute", True)]
    assert restarts == 2  # the hung one and the crashed one were replaced
    assert any("overran its time budget" in f.reason for f in failures)
    assert any("exit code 3" in f.reason for f in failures)
    assert any("ValueError: bad value 6" in f.reason for f in failures)


def test_retry_runs_a_replacement_task_in_the_same_slot():
    def on_failure(task, failure):
        return Retry(("ok", 10))

    with SupervisedPool(square_or_hang, 1) as pool:
        results = list(pool.imap([("ok", 1), ("raise", 2), ("ok", 3)], on_failure))
    assert results == [1, 100, 9]
