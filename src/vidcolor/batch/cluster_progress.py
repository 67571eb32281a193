"""What the cluster batch shows: one bar for the archive, and the ``--report`` table."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vidcolor.batch.cluster import ClusterOutcome


class NoProgress:
    def start(self, files: int, frames: int) -> None: ...
    def update(self, frames: int) -> None: ...
    def file_done(self) -> None: ...
    def close(self) -> None: ...


class ArchiveBar(NoProgress):
    """One bar for the archive: files done, frames, fps across workers, ETA."""

    def __init__(self, console):
        self.console = console
        self.bar = None

    def start(self, files: int, frames: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, \
            TimeRemainingColumn

        self.files, self.files_done, self.started = files, 0, time.perf_counter()
        self.bar = Progress(TextColumn("{task.fields[files]}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("frames"),
                            TextColumn("{task.fields[fps]:.1f} fps"), TimeRemainingColumn(),
                            console=self.console, transient=True)
        self.task = self.bar.add_task("batch", total=frames or None, fps=0.0,
                                      files=self._files())
        self.bar.start()

    def _files(self) -> str:
        return f"files {self.files_done}/{self.files}"

    def update(self, frames: int) -> None:
        if self.bar is not None:
            fps = frames / max(time.perf_counter() - self.started, 1e-9)
            self.bar.update(self.task, completed=frames, fps=fps, files=self._files())

    def file_done(self) -> None:
        self.files_done += 1

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def archive_progress(quiet: bool):
    """The bar on a terminal; otherwise the event lines alone say what happens."""
    if quiet or not sys.stderr.isatty():
        return NoProgress()
    from vidcolor.progress import stderr_console

    return ArchiveBar(stderr_console())


def print_report(outcome: ClusterOutcome, console) -> None:
    """``--report``: which worker did each file, its frames, time and attempts."""
    from rich.table import Table

    table = Table(title=f"vidcolor batch on the cluster: {outcome.frames} frames in "
                        f"{outcome.seconds:.1f} s "
                        f"({outcome.frames / outcome.seconds if outcome.seconds else 0:.2f} fps)")
    for column in ("video", "workers", "frames", "seconds", "fps", "attempts", "ranges"):
        table.add_column(column)
    for video, record in outcome.records.items():
        fps = record.frames / record.seconds if record.seconds else 0.0
        table.add_row(video.name, ", ".join(record.workers) or "-", str(record.frames),
                      f"{record.seconds:.1f}", f"{fps:.2f}", str(record.attempts),
                      str(len(record.ranges) or 1))
    console.print(table)
