"""The cluster's unit of work and the worker that does it (a Ray actor's body).

Ray is not imported here: the driver (``batch/cluster.py``) wraps ``ColorizeWorker`` with
``ray.remote``, so the worker's logic runs and reads like any other code.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable

from vidcolor.batch import ranges as range_split
from vidcolor.batch.runner import Job, job_references
from vidcolor.errors import VidcolorError


@dataclass(frozen=True)
class Task:
    """One unit of work: a whole file, one range of it, or the join of its ranges."""

    job: Job
    kind: str  # "file" | "range" | "join"
    frame_range: range_split.FrameRange | None = None
    ranges: tuple[range_split.FrameRange, ...] = ()
    shot_starts: tuple[int, ...] = ()  # for a range: the shots that start inside it
    attempt: int = 0

    @property
    def label(self) -> str:
        if self.kind == "range":
            end = "end" if self.frame_range.end is None else self.frame_range.end
            return f"{self.job.video.name} [{self.frame_range.start}, {end})"
        return f"{self.job.video.name}{' (join)' if self.kind == 'join' else ''}"


def run_task(colorizer, task: Task, video_options: dict[str, Any],
             on_frame: Callable[[], None]) -> int:
    """Do ``task`` with a loaded colorizer; returns the frames colorized (joined, for a join)."""
    job = task.job
    if task.kind == "file":
        # exactly the sequential batch's call, so both write the same file
        summary = colorizer.colorize_video(job.video, job_references(job), job.output,
                                           overwrite=True, quiet=True, on_frame=on_frame,
                                           **video_options)
        return summary.frames
    if task.kind == "range":
        return range_split.colorize_range(
            colorizer, job.video, job_references(job), task.frame_range, job.output,
            shot_starts=task.shot_starts,
            mode=video_options["mode"], preset=video_options["preset"],
            size=video_options["size"], on_frame=on_frame)
    return range_split.join_ranges(job.video, list(task.ranges), job.output,
                                   preset=video_options["preset"], codec=video_options["codec"],
                                   crf=video_options["crf"])


class ColorizeWorker:
    """A Ray actor's body: one Colorizer, loaded once, running one task at a time.

    A second thread (the actor runs with ``max_concurrency=2``) answers ``progress`` while
    ``run`` works. Failures of the file itself come back as results, so only the death of
    the process reaches the driver as a Ray error.
    """

    def __init__(self, colorizer_options: dict[str, Any], threads: int | None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.notices: list[str] = []
        self.frames = 0
        self.init_error: tuple[str, int] | None = None
        try:
            from vidcolor.colorizer import Colorizer

            self.colorizer = Colorizer(**colorizer_options, notify=self.notices.append)
        except VidcolorError as error:  # e.g. no weights on this node: reported, not retried
            self.init_error = (str(error), error.exit_code)

    def identity(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(), "init_error": self.init_error,
                "notices": list(self.notices),
                "device": str(self.colorizer.device) if self.init_error is None else None}

    def progress(self) -> int:
        return self.frames

    def _tick(self) -> None:
        self.frames += 1

    def run(self, task: Task, video_options: dict[str, Any]) -> dict[str, Any]:
        self.frames = 0
        self.notices.clear()
        started = time.perf_counter()
        result: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
        try:
            result["frames"] = run_task(self.colorizer, task, video_options, self._tick)
            result["ok"] = True
        except VidcolorError as error:
            result.update(ok=False, error=str(error))
        except Exception as error:  # noqa: BLE001 - one broken file must not stop the batch
            result.update(ok=False, error=f"{task.job.video}: unexpected "
                                          f"{type(error).__name__}: {error}")
        result["seconds"] = time.perf_counter() - started
        result["notices"] = list(self.notices)
        return result
