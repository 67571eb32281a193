"""Colorize an edited film shot by shot: no I/O, no option parsing.

The recurrence restarts at every shot boundary (exemplar mode: no previous colour; propagation:
the shot's pinned keyframe). Each shot gets one reference, chosen once from the frames at its
start: a pinned one (``--ref TIME=IMAGE``, ``--ref-dir``) or else the best match by the
engine's own similarity (``engine.reference_match`` where the engine has one, else its mean
correspondence confidence). Every reference's side is prepared once for the whole run.
Batches never straddle a boundary, so a shot is colorized exactly as if it were alone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from vidcolor.engines.base import Engine
from vidcolor.io.frame import Frame
from vidcolor.pipeline.loop import ColorizedFrame, StageTimes, batched
from vidcolor.shots import Shot


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


def match_score(engine: Engine, frames_l: torch.Tensor, ref: Any) -> float:
    """The engine's own similarity of a reference to frames (higher is better)."""
    own = getattr(engine, "reference_match", None)
    if own is not None:
        return float(own(frames_l, ref))
    return float(engine.correspond(frames_l, ref).confidence.float().mean())


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
    with each shot's choice before its first frame is yielded.
    """
    times = times or StageTimes()
    to_engine = {"device": engine.device, "dtype": engine.dtype}
    with torch.inference_mode():
        t = time.perf_counter()
        prepared = [engine.prepare_reference(preset.prepare_reference(r.rgb).to(**to_engine))
                    for r in references]
        matchable = list(range(len(references)))  # pinned keyframes may match other shots
        times.add("reference", t)
        for shot, shot_frames in _frames_by_shot(frames, shots):
            state = None
            choice = None
            t = time.perf_counter()
            for batch in batched(shot_frames, batch_size):
                t = times.add("decode", t)
                prepared_frames = [preset.prepare(frame.rgb) for frame in batch]
                labs = torch.cat([lab for lab, _ in prepared_frames]).to(**to_engine)
                t = times.add("preprocess", t)
                if choice is None:
                    choice, ref_index = _choose(engine, labs[:, :1], shot, references, prepared,
                                                pins, matchable)
                    choice.propagated = propagate and choice.how == "pinned"
                    state = engine.initial_state(prepared[ref_index], choice.propagated)
                    ref = prepared[ref_index]
                    t = times.add("matching", t)
                    if on_shot is not None:
                        on_shot(choice)
                corr = engine.correspond(labs[:, :1], ref)
                t = times.add("correspondence", t)
                for i, frame in enumerate(batch):
                    ab, state = engine.step(labs[i : i + 1, :1], corr[i], state)
                    t = times.add("colorization", t)
                    rgb = preset.finish(engine, ab, labs[i : i + 1], prepared_frames[i][1],
                                        frame.rgb)
                    confidence = float(corr.confidence[i].float().mean())
                    t = times.add("postprocess", t)
                    yield ColorizedFrame(frame, rgb, confidence)
                    t = time.perf_counter()


def _choose(engine, frames_l, shot: Shot, references: list[Reference], prepared: list,
            pins: dict[int, int], matchable: list[int]) -> tuple[ShotChoice, int]:
    if shot.index in pins:
        index = pins[shot.index]
        score = match_score(engine, frames_l, prepared[index])
        how = "pinned"
    else:
        scores = {i: match_score(engine, frames_l, prepared[i]) for i in matchable}
        index = max(scores, key=lambda i: (scores[i], -i))  # ties: the first given
        score, how = scores[index], "matched"
    return ShotChoice(shot.index, shot.start_frame, shot.end_frame, references[index].label,
                      how, score), index
