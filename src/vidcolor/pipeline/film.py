"""An edited film's plan for ``Colorizer``: its shots, its references, which are pinned where.

``--ref A.jpg --ref B.jpg`` gives references to match; ``--ref TIME=IMAGE`` (TIME in seconds
or HH:MM:SS.mmm) pins one to the shot containing TIME; ``--ref-dir DIR`` reads a
``vidcolor shots --export`` folder, each image pinned to its shot by its timecode name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from vidcolor.errors import OptionError
from vidcolor.pipeline.reference import load_reference
from vidcolor.pipeline.shots import Reference, ShotChoice
from vidcolor.shots import Shot


@dataclass
class FilmPlan:
    shots: list[Shot]
    references: list[Reference]
    pins: dict[int, int]
    detect_seconds: float = 0.0
    choices: list[ShotChoice] = field(default_factory=list)


def split_pinned(text: str) -> tuple[float | None, str]:
    """"12.5=key.png" -> (12.5, "key.png"); a plain path (even with "=" in it) -> (None, path)."""
    from vidcolor.shots.export import parse_time

    if "=" in text:
        head, tail = text.split("=", 1)
        try:
            return parse_time(head), tail
        except OptionError:
            pass
    return None, text


def gather_references(refs: Sequence[Any], ref_dir: str | Path | None) -> list[Reference]:
    """Every reference given, loaded once (``RefImageError`` in one line for a bad one)."""
    from vidcolor.shots.export import pinned_times

    gathered = []
    for ref in refs:
        if isinstance(ref, np.ndarray):
            gathered.append(Reference("array", load_reference(ref)))
            continue
        when, path = split_pinned(str(ref))
        gathered.append(Reference(str(path), load_reference(path), when))
    if ref_dir is not None:
        for when, path in pinned_times(Path(ref_dir)):
            gathered.append(Reference(str(path), load_reference(path), when))
    if not gathered:
        raise OptionError("give at least one reference (--ref IMAGE, --ref TIME=IMAGE or --ref-dir)")
    return gathered


def plan_film(src: Path, references: list[Reference], *, start, duration, max_frames,
              detect: bool, propagate: bool, notify: Callable[[str], None]) -> FilmPlan:
    """Detect the shots (a fast decoding pass of its own: memory flat, no frame held) and
    pin references to them."""
    from vidcolor.io.reader import probe
    from vidcolor.shots import detect_shots, shots_from_boundaries
    from vidcolor.shots.export import shots_of_times, timecode

    started = time.perf_counter()
    info = probe(src)
    if detect:
        shots = detect_shots(src, start=start, duration=duration, max_frames=max_frames)
    else:  # one shot; its frame count is settled as the frames stream
        shots = shots_from_boundaries([], 1 << 62, 0.0, float("inf"))
    seconds = time.perf_counter() - started
    pins: dict[int, int] = {}
    timed = [(i, r.time) for i, r in enumerate(references) if r.time is not None]
    for (ref_index, when), shot_index in zip(timed, shots_of_times(shots, [t for _, t in timed],
                                                                   info.fps)):
        if shot_index is None:
            raise OptionError(f"--ref {when}={references[ref_index].label}: {timecode(when)} "
                              "is past the end of the video")
        if shot_index in pins:
            notify(f"shot {shot_index} has several pinned references; using "
                   f"{references[pins[shot_index]].label}")
            continue
        pins[shot_index] = ref_index
    if propagate and not timed:  # the classic call: --ref is a colored first frame
        pins[0] = 0
    return FilmPlan(shots, references, pins, seconds)
