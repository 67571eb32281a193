"""Progress for long runs: a rich bar on a terminal, one summary line otherwise, or silence."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)


class FrameProgress(Protocol):
    def advance(self, frames: int = 1) -> None: ...


class _Silent:
    def __init__(self) -> None:
        self.done = 0

    def advance(self, frames: int = 1) -> None:
        self.done += frames


class _Bar:
    def __init__(self, progress: Progress, task: int) -> None:
        self.progress, self.task = progress, task
        self.done = 0
        self.started = time.perf_counter()

    def advance(self, frames: int = 1) -> None:
        self.done += frames
        fps = self.done / max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(self.task, advance=frames, fps=fps)


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


@contextmanager
def frame_progress(label: str, total: int | None, *, quiet: bool) -> Iterator[FrameProgress]:
    """A frame bar (done/total, fps, ETA) when stderr is a terminal and not quiet."""
    if quiet or not sys.stderr.isatty():
        yield _Silent()
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[fps]:.2f} fps"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=stderr_console(), transient=True) as progress:
        task = progress.add_task(label, total=total, fps=0.0)
        yield _Bar(progress, task)
