"""The progress bar of long CLI jobs (`kizuna import`): rows done of about how many, the rate
and the time left, on standard error (standard output keeps the summary, for scripts).

rich draws it: a maintained library already in the dependency tree (schemathesis and pip use
it), it redraws in place on a terminal and falls back to nothing when standard error is not a
terminal (a cron job's log gets the summary, not ten thousand bar frames)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.progress import (
    BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Rows per second, smoothed by rich over the last moments."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f} rows/s", style="progress.data.speed")


@dataclass
class Bar:
    progress: Progress
    task: TaskID

    @property
    def console(self) -> Console:
        """Print through this, so a line lands above the bar instead of through it."""
        return self.progress.console

    def advance(self, rows: int) -> None:
        self.progress.advance(self.task, rows)


@contextmanager
def import_progress(description: str, *, total: int) -> Iterator[Bar]:
    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
        TextColumn("ETA"), TimeRemainingColumn(), TimeElapsedColumn(),
        console=console, transient=False, disable=not console.is_terminal,
    )
    with progress:
        task = progress.add_task(description, total=max(total, 1))
        yield Bar(progress, task)
        # The line count was an estimate (a quoted cell may hold a newline): end at 100 %.
        progress.update(task, completed=progress.tasks[0].total)
