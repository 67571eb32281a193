"""``vidcolor batch``: every video of a folder with its reference, resumable.

Pairing rules (first that applies): ``--ref`` for all; an image with the video's stem beside it
(``clip.mp4`` + ``clip.jpg``); the first image in a folder named like the video (``clip/``); an
image in ``refs/`` with the stem (``refs/clip.png``). Videos with none are listed and skipped.

A manifest (``vidcolor-batch.json`` in the output folder) records each file's status: done,
failed, interrupted (SIGINT/SIGTERM stopped the batch there) or partial (the process was killed
outright). A rerun skips files marked done whose output still exists and redoes the others. A
manifest that cannot be read is renamed aside (``.corrupt-TIME``) and reported, not lost.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vidcolor.errors import InputError, Interrupted, VidcolorError, unexpected_failure
from vidcolor.io.atomic import remove_stale_partials, write_text_atomic
from vidcolor.io.images import natural_sort_key
from vidcolor.io.naming import VIDEO_EXTENSIONS

MANIFEST_NAME = "vidcolor-batch.json"
REF_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class Job:
    video: Path
    reference: Path | None
    output: Path


def find_reference(video: Path, shared: Path | None) -> Path | None:
    """The reference for ``video`` by the pairing rules, or None."""
    if shared is not None:
        return shared
    for ext in REF_EXTENSIONS:
        for candidate in (video.with_suffix(ext), video.with_suffix(ext.upper())):
            if candidate.is_file():
                return candidate
    folder = video.with_suffix("")
    if folder.is_dir():
        images = sorted((p for p in folder.iterdir() if p.suffix.lower() in REF_EXTENSIONS),
                        key=lambda p: natural_sort_key(p.name))
        if images:
            return images[0]
    refs = video.parent / "refs"
    for ext in REF_EXTENSIONS:
        candidate = refs / f"{video.stem}{ext}"
        if candidate.is_file():
            return candidate
    return None


def job_references(job: Job) -> list[Path]:
    """A video's references: every image of its own folder (``clip/``) when that is where its
    reference came from (several references, one per shot by matching), else the one."""
    folder = job.video.with_suffix("")
    if job.reference is not None and job.reference.parent == folder:
        return sorted((p for p in folder.iterdir() if p.suffix.lower() in REF_EXTENSIONS),
                      key=lambda p: natural_sort_key(p.name))
    return [job.reference]


def plan_jobs(folder: Path, out_dir: Path, shared_ref: Path | None) -> list[Job]:
    """Every video directly in ``folder`` (natural order) with its reference and output path."""
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")
    videos = sorted((p for p in folder.iterdir()
                     if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
                     and not p.name.startswith(".")), key=lambda p: natural_sort_key(p.name))
    if not videos:
        raise InputError(f"{folder}: no video files found (looked for {', '.join(sorted(VIDEO_EXTENSIONS))})")
    return [Job(v, find_reference(v, shared_ref), out_dir / f"{v.stem}.color{v.suffix}")
            for v in videos]


class Manifest:
    """Per-file status on disk, rewritten atomically after every change."""

    def __init__(self, path: Path, notify: Callable[[str], None] = lambda message: None):
        self.path = path
        self.entries: dict[str, dict] = {}
        remove_stale_partials(path)  # a killed run's half-written manifest
        if path.exists():
            try:
                files = json.loads(path.read_text()).get("files", {})
                if not isinstance(files, dict):
                    raise ValueError("no 'files' table")
                self.entries = files
            except (ValueError, AttributeError, UnicodeDecodeError) as error:
                aside = self.set_aside()
                notify(f"{path}: unreadable batch manifest ({type(error).__name__}) renamed to "
                       f"{aside.name}; every file is redone")

    def set_aside(self) -> Path:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        self.path.rename(aside)
        return aside

    def status(self, job: Job) -> str | None:
        return self.entries.get(job.video.name, {}).get("status")

    def is_done(self, job: Job) -> bool:
        return self.status(job) == "done" and job.output.exists()

    def record(self, job: Job, status: str, **details) -> None:
        self.entries[job.video.name] = {"status": status, "video": str(job.video),
                                        "reference": str(job.reference) if job.reference else None,
                                        "output": str(job.output), **details}
        write_text_atomic(self.path, json.dumps({"files": self.entries}, indent=2))


def run_batch(jobs: list[Job], out_dir: Path, colorize: Callable[[Job], object],
              on_event: Callable[[str, Job, str], None], redo_done: bool = False
              ) -> dict[str, list[Job]]:
    """Run ``colorize`` on each job; one failure never stops the batch, a signal does.

    ``on_event(kind, job, message)`` with kind in skipped|noref|start|done|failed, and
    ``("manifest", None, message)`` when the manifest had to be set aside. SIGINT
    (KeyboardInterrupt) and SIGTERM (``Interrupted``) mark the file interrupted and propagate.
    ``redo_done``: colorize again the files a previous run finished (``--overwrite``).
    Returns the jobs grouped by outcome.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out_dir / MANIFEST_NAME,
                        notify=lambda message: on_event("manifest", None, message))
    outcome: dict[str, list[Job]] = {"done": [], "skipped": [], "failed": [], "noref": []}
    for job in jobs:
        if job.reference is None:
            outcome["noref"].append(job)
            on_event("noref", job, "no reference found")
            continue
        if manifest.is_done(job) and not redo_done:
            outcome["skipped"].append(job)
            on_event("skipped", job, "already done")
            continue
        manifest.record(job, "partial")  # stays "partial" if the run is killed here
        on_event("start", job, "")
        started = time.perf_counter()
        try:
            colorize(job)
        except (Interrupted, KeyboardInterrupt):
            manifest.record(job, "interrupted")  # not done, not failed: the rerun redoes it
            raise
        except Exception as error:  # noqa: BLE001 - one broken file must not stop the batch
            message = str(error if isinstance(error, VidcolorError)
                          else unexpected_failure(job.video, error))
            manifest.record(job, "failed", error=message)
            outcome["failed"].append(job)
            on_event("failed", job, message)
            continue
        manifest.record(job, "done", seconds=round(time.perf_counter() - started, 3))
        outcome["done"].append(job)
        on_event("done", job, "")
    return outcome
