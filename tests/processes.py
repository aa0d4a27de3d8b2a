"""Killing a real run at a chosen point: the SIGKILL half of the resume tests."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def kill_when(command: list[str], ready: Callable[[], bool], log: Path, *, point: str = "the kill point",
              timeout: float = 300) -> None:
    """Start `command` and SIGKILL it as soon as `ready()` holds; fail if it exits or stalls before."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + timeout
        try:
            while not ready():
                if proc.poll() is not None:
                    pytest.fail(f"{command[2:4]} exited ({proc.returncode}) before {point}; "
                                f"log: {log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"timed out waiting for {point}")
                time.sleep(0.02)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
