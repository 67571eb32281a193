"""A rich progress bar (bytes, speed, time left) for ``download.install``'s callback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from vidcolor.weights.zipformat import ProgressCallback


@contextmanager
def rich_progress(console=None) -> Iterator[ProgressCallback]:
    """Yield a ``progress(done_bytes, total_bytes, label)`` callback drawing one bar.

    The callback's totals are cumulative over all members, so one task suffices; its
    description follows the member being fetched.
    """
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task("connecting", total=None)

        def update(done: int, total: int, label: str) -> None:
            bar.update(task, completed=done, total=total or None, description=label)

        yield update
