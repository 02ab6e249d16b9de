"""Progress bars (rich) shared by the CLI commands: count, rate and ETA on stderr."""

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

__all__ = ["RateColumn", "progress_bar"]


class RateColumn(ProgressColumn):
    """Items per second, e.g. '12.3 photos/s'."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-" if speed is None else f"{speed:.1f} {self.unit}/s")


@contextmanager
def progress_bar(
    description: str, total: int | None, disable: bool = False, unit: str = "photos"
) -> Iterator[Callable[..., None]]:
    """Yields `advance(count=1)`; the bar is hidden when `disable` is true."""
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=disable) as progress:
        task = progress.add_task(description, total=total)

        def advance(count: int = 1) -> None:
            progress.advance(task, count)

        yield advance
