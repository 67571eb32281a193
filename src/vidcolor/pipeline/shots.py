"""Colorize an edited film shot by shot: no I/O, no option parsing.

The recurrence restarts at every shot boundary (exemplar mode: no previous colour; propagation:
the shot's pinned keyframe). Each shot gets one reference, chosen once from the frames at its
start: a pinned one (``--ref TIME=IMAGE``, ``--ref-dir``) or else the best match by the
engine's ``reference_match``, on the shot's most contrasted frames among its first
:data:`MATCH_LOOKAHEAD` (past a fade-in's black and a dissolve's blend). Every reference's side
is prepared once for the whole run.
Batches never straddle a boundary, so a shot is colorized exactly as if it were alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from vidcolor.engines.base import Engine
from vidcolor.io.frame import Frame
from vidcolor.pipeline.loop import ColorizedFrame, StageTimes, colorize_segments
from vidcolor.pipeline.transfer import to_device
from vidcolor.shots import Shot


# A shot's reference is matched on the MATCHED_FRAMES most contrasted of its first
# MATCH_LOOKAHEAD frames: a fade through black brings a shot in over 8-16 frames and half of a
# 32-frame dissolve (tests/edits.py's longest) belongs to the next shot; blends and fades
# have less contrast than the pure shot. The look-ahead is all the loop holds beyond its batch.
MATCH_LOOKAHEAD = 16
MATCHED_FRAMES = 2
# Contrast is measured on every CONTRAST_STRIDE-th pixel each way (ranking only).
CONTRAST_STRIDE = 8


@dataclass(frozen=True)
class Reference:
    """One reference as the user gave it: ``label`` (the path as given), its pixels, and the
    time it is pinned to (seconds) or None to be matched."""

    label: str
    rgb: np.ndarray
    time: float | None = None


@dataclass
class ShotChoice:
    """What a shot got: for ``--report``'s "shots" list."""

    index: int
    start_frame: int
    end_frame: int
    reference: str
    how: str  # pinned | matched
    confidence: float
    propagated: bool = False

    def to_dict(self) -> dict:
        return {"index": self.index, "start_frame": self.start_frame,
                "end_frame": self.end_frame, "reference": self.reference, "how": self.how,
                "confidence": round(self.confidence, 4)}


def _frames_by_shot(frames: Iterable[Frame], shots: list[Shot]) -> Iterator[tuple[Shot, Iterator[Frame]]]:
    """Split the stream at shot boundaries without holding more than one frame."""
    iterator = iter(frames)
    pending: list[Frame] = []

    def shot_frames(shot: Shot) -> Iterator[Frame]:
        while True:
            frame = pending.pop() if pending else next(iterator, None)
            if frame is None:
                return
            if frame.index >= shot.end_frame and shot is not shots[-1]:
                pending.append(frame)
                return
            yield frame

    for shot in shots:
        generator = shot_frames(shot)
        yield shot, generator
        for _ in generator:  # the consumer stopped early: skip the rest of the shot
            pass


def colorize_shots(engine: Engine, preset: Any, frames: Iterable[Frame], shots: list[Shot],
                   references: list[Reference], pins: dict[int, int], *, propagate: bool,
                   batch_size: int, times: StageTimes | None = None,
                   on_shot: Callable[[ShotChoice], None] | None = None
                   ) -> Iterator[ColorizedFrame]:
    """Colorize ``frames`` (whose shots are ``shots``) with one reference per shot.

    ``pins`` maps a shot index to the index of its pinned reference. ``on_shot`` is called
    with each shot's choice when its first batch is colorized.
    """
    times = times or StageTimes()
    t = time.perf_counter()
    with torch.inference_mode():
        prepared = [engine.prepare_reference(
            to_device(preset.prepare_reference(r.rgb), engine.device, engine.dtype))
            for r in references]
    times.add("reference", t)
    matchable = list(range(len(references)))  # pinned keyframes may match other shots

    matching: dict[int, torch.Tensor] = {}

    def segments() -> Iterator[Iterator[Frame]]:
        for shot, shot_frames in _frames_by_shot(frames, shots):
            ahead = list(islice(shot_frames, MATCH_LOOKAHEAD))
            if ahead:
                matching[shot.index] = _matching_l(engine, preset, ahead)
            yield chain(ahead, shot_frames)

    def begin(index: int, frames_l: torch.Tensor) -> tuple[Any, Any]:
        t = time.perf_counter()
        choice, ref_index = _choose(engine, matching.pop(index, frames_l), shots[index],
                                    references, prepared, pins, matchable)
        choice.propagated = propagate and choice.how == "pinned"
        times.add("matching", t)
        if on_shot is not None:
            on_shot(choice)
        return prepared[ref_index], engine.initial_state(prepared[ref_index], choice.propagated)

    yield from colorize_segments(engine, preset, segments(), begin, batch_size=batch_size,
                                 times=times)


def _matching_l(engine: Engine, preset: Any, ahead: list[Frame]) -> torch.Tensor:
    """(k, 1, h, w) centred L of the most contrasted frames of a shot's look-ahead, in order."""
    def contrast(frame: Frame) -> float:
        sample = frame.rgb[::CONTRAST_STRIDE, ::CONTRAST_STRIDE].astype(np.float32)
        return float(sample.mean(axis=2).std())

    picked = sorted(sorted(range(len(ahead)), key=lambda i: (-contrast(ahead[i]), -i))
                    [:MATCHED_FRAMES])
    with torch.inference_mode():
        labs = torch.cat([preset.prepare(ahead[i].rgb)[0] for i in picked])
    return to_device(labs[:, :1], engine.device, engine.dtype)


def best_reference(scores: dict[int, float]) -> int:
    """The index of the highest score; among equal scores, the reference given first."""
    return max(scores, key=lambda i: (scores[i], -i))


def _choose(engine, frames_l, shot: Shot, references: list[Reference], prepared: list,
            pins: dict[int, int], matchable: list[int]) -> tuple[ShotChoice, int]:
    if shot.index in pins:
        index = pins[shot.index]
        score = engine.reference_match(frames_l, prepared[index])
        how = "pinned"
    else:
        scores = {i: engine.reference_match(frames_l, prepared[i]) for i in matchable}
        index = best_reference(scores)
        score, how = scores[index], "matched"
    return ShotChoice(shot.index, shot.start_frame, shot.end_frame, references[index].label,
                      how, score), index
