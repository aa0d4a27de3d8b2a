"""The terminal side: rich progress bars on stderr, one per long loop, each with its average rate.

`progress_bar(...)` is a context manager yielding `advance(n)`, and a no-op when progress is off.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        """Average since the start: steadier than rich's windowed speed for bursty, ordered output."""
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or not task.completed:
            return Text(f"- {self.unit}/s", style="progress.data.speed")
        return Text(f"{task.completed / elapsed:.1f} {self.unit}/s", style="progress.data.speed")


@contextmanager
def progress_bar(description: str, total: int | None, unit: str, *, enabled: bool = True
                 ) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda n=1: None
        return
    columns = [TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               RateColumn(unit), TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


def stage_progress(label: str, unit: str, *fields: str) -> Progress:
    """A stage's own live bar on stderr (stdout is for results a script may capture): the label, done / total
    `unit`, the stage's fields (rich format strings over `task.fields`), elapsed time and ETA."""
    # A short bar, so the rates and the ETA still fit an 80-column terminal (rich drops what overflows).
    return Progress(TextColumn(f"[bold]{label}"), BarColumn(bar_width=10), MofNCompleteColumn(), TextColumn(unit),
                    *(TextColumn(field) for field in fields), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), console=Console(stderr=True))
