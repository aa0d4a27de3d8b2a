"""The live view of a generation run: samples done / total, problems finished, output tok/s, ETA."""
from __future__ import annotations

import time
from collections import Counter

from rich.progress import Progress

from distill.ui import stage_progress


class GenerateProgress:
    """A rich progress bar over samples; a problem counts as done when its last pending sample lands."""

    def __init__(self, *, enabled: bool, n: int) -> None:
        self.enabled = enabled
        self.n = n
        self.outstanding: Counter[str] = Counter()  # problem id -> samples in flight (bounded by batch)
        self.problems_done = 0
        self.tokens = 0
        self.started = time.perf_counter()
        self._progress: Progress | None = None
        self._task = None

    def start(self, total_samples: int | None) -> None:
        self.started = time.perf_counter()
        if not self.enabled or total_samples == 0:  # all written earlier (a resumed eval): no "0/0" bar
            return
        self._progress = stage_progress("generate", "samples", "{task.fields[problems]} problems",
                                        "{task.fields[tps]:.0f} tok/s")
        self._progress.start()
        self._task = self._progress.add_task("generate", total=total_samples, problems=0, tps=0.0)

    def restart_clock(self) -> None:
        """Rates count from here (after the teacher has loaded), not from the start of the run."""
        self.started = time.perf_counter()

    def expect(self, problem_id: str) -> None:
        self.outstanding[problem_id] += 1

    def advance(self, request, completion_tokens: int) -> None:
        self.tokens += completion_tokens
        self.outstanding[request.problem_id] -= 1
        if self.outstanding[request.problem_id] <= 0:
            del self.outstanding[request.problem_id]
            self.problems_done += 1
        if self._progress is not None:
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            self._progress.update(self._task, advance=1, problems=self.problems_done,
                                  tps=self.tokens / elapsed)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
