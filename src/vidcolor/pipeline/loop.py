"""The recurrent loop over frames: no I/O, no options parsing.

The frame side of the correspondence does not depend on the previous output, so it runs
batched over ``batch_size`` frames; only ``engine.step`` (the colorization) is sequential, and
its state is passed explicitly (DESIGN.md, Data path).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from vidcolor.engines.base import Engine
from vidcolor.io.frame import Frame

DEFAULT_BATCH_SIZE = 4


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over the run (for --report)."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, stage: str, since: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - since
        return now


@dataclass(frozen=True)
class ColorizedFrame:
    """One output picture with the source frame it came from and its match confidence."""

    source: Frame
    rgb: np.ndarray
    confidence: float


def batched(frames: Iterable[Frame], size: int) -> Iterator[list[Frame]]:
    batch: list[Frame] = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def colorize_stream(engine: Engine, preset: Any, frames: Iterable[Frame], reference: np.ndarray,
                    *, propagate: bool, batch_size: int = DEFAULT_BATCH_SIZE,
                    times: StageTimes | None = None) -> Iterator[ColorizedFrame]:
    """Colorize ``frames`` against ``reference`` (HxWx3 RGB), yielding each result in order.

    Memory stays flat with video length: at most ``batch_size`` frames are held. Inference
    mode is entered around the engine's work only, never held across a ``yield``: the caller's
    loop body (and another generator interleaved with this one) runs in its own mode.
    """
    times = times or StageTimes()
    to_engine = {"device": engine.device, "dtype": engine.dtype}
    t = time.perf_counter()
    with torch.inference_mode():
        ref_lab = preset.prepare_reference(reference).to(**to_engine)
        ref = engine.prepare_reference(ref_lab)
        state = engine.initial_state(ref, propagate)
    t = times.add("reference", t)
    for batch in batched(frames, batch_size):
        t = times.add("decode", t)
        with torch.inference_mode():
            prepared = [preset.prepare(frame.rgb) for frame in batch]
            labs = torch.cat([lab for lab, _ in prepared]).to(**to_engine)
            t = times.add("preprocess", t)
            corr = engine.correspond(labs[:, :1], ref)
        t = times.add("correspondence", t)
        for i, frame in enumerate(batch):
            with torch.inference_mode():
                ab, state = engine.step(labs[i : i + 1, :1], corr[i], state)
                t = times.add("colorization", t)
                rgb = preset.finish(engine, ab, labs[i : i + 1], prepared[i][1], frame.rgb)
                confidence = float(corr.confidence[i].float().mean())
            t = times.add("postprocess", t)
            yield ColorizedFrame(frame, rgb, confidence)
            t = time.perf_counter()  # the consumer's time (encoding) is not ours
