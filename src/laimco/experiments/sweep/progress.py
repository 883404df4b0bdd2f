"""The progress bar of a sweep: scenario-realizations done, their rate and the time left."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from laimco.experiments.sweep.expansion import ChunkTask


class ProgressBar:
    """A rich progress bar over scenario-realizations with rate and ETA (no-op when off)."""

    def __init__(self, name: str, chunks: Sequence[ChunkTask], todo: Sequence[ChunkTask],
                 enabled: bool, console: Any) -> None:
        self.enabled = enabled and bool(todo)
        self.total = sum(c.evaluations for c in todo)
        skipped = len(chunks) - len(todo)
        self.description = (f"{name}: {len(todo)} chunks"
                            + (f" ({skipped} done before)" if skipped else ""))
        self.console = console

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda n: None
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            _RateColumn(), TimeElapsedColumn(),
            console=self.console or Console(stderr=True))
        self.progress.start()
        task = self.progress.add_task(self.description, total=self.total)
        return lambda n: self.progress.advance(task, n)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.stop()


class _RateColumn(ProgressColumn):
    """Scenario-realizations per second since the start, and the time left at that rate
    (rich's own estimate follows the last few updates, which chunks make jumpy)."""

    def render(self, task: Any) -> Text:
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or not task.completed:
            return Text("… /s  ETA …", style="progress.data.speed")
        speed = task.completed / elapsed
        shown = next((f"{speed / scale:.1f}{unit}" for unit, scale in (("M", 1e6), ("k", 1e3))
                      if speed >= scale), f"{speed:.1f}")
        left = max(task.total - task.completed, 0) / speed
        minutes, seconds = divmod(round(left), 60)
        return Text(f"{shown} /s  ETA {minutes}:{seconds:02d}", style="progress.data.speed")
