"""The recurrent loop over frames: no I/O, no options parsing.

The frame side of the correspondence does not depend on the previous output, so it runs
batched over ``batch_size`` frames; only ``engine.step`` (the colorization) is sequential, and
its state is passed explicitly (DESIGN.md, Data path). Post-processing overlaps the next
batch in a worker thread.
"""

from __future__ import annotations

import time
from collections import defaultdict, deque
from contextlib import closing
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from vidcolor.engines.base import Engine
from vidcolor.io.frame import Frame
from vidcolor.io.prefetch import prefetch
from vidcolor.pipeline.transfer import HostCopy, to_device, to_host

DEFAULT_BATCH_SIZE = 4


@dataclass
class StageTimes:
    """Seconds spent per stage, summed over the run (for --report).

    ``synchronize``: called before each reading of the clock, e.g. ``torch.cuda.synchronize``
    so that a GPU stage is charged with its own work, not queued (only when timings are asked
    for: it makes the host wait).
    """

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    synchronize: Callable[[], None] | None = None

    def add(self, stage: str, since: float) -> float:
        if self.synchronize is not None:
            self.synchronize()
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
    """Colorize ``frames`` against ``reference`` (HxWx3 RGB), yielding each result in order:
    one shot, one reference (``colorize_segments`` does the work)."""
    times = times or StageTimes()
    t = time.perf_counter()
    with torch.inference_mode():
        ref = engine.prepare_reference(
            to_device(preset.prepare_reference(reference), engine.device, engine.dtype))
    times.add("reference", t)

    def begin(index: int, frames_l: torch.Tensor) -> tuple[Any, Any]:
        return ref, engine.initial_state(ref, propagate)

    yield from colorize_segments(engine, preset, [frames], begin, batch_size=batch_size,
                                 times=times)


def colorize_segments(engine: Engine, preset: Any, segments: Iterable[Iterable[Frame]],
                      begin: Callable[[int, torch.Tensor], tuple[Any, Any]], *,
                      batch_size: int = DEFAULT_BATCH_SIZE,
                      times: StageTimes | None = None) -> Iterator[ColorizedFrame]:
    """Colorize consecutive segments (shots) of a clip, yielding each result in order.

    The recurrence restarts at each segment: ``begin(index, frames_l)`` is called (in
    inference mode) with the segment's first batch of L and returns its prepared reference
    and initial state; batches never straddle two segments.

    Memory stays flat with video length: at most two batches of frames are held. The engine
    runs here; each frame's post-processing (``preset.finish``: chroma upsampling, smoothing,
    Lab -> RGB, on the host) runs in a worker thread while the engine computes the next
    batch, so results come out one batch behind. On a GPU nothing here waits for the device
    but one read of the batch's confidence means and the host copies of its outputs.
    Inference mode is entered around the engine's work only, never held across a ``yield``:
    the caller's loop body (and another generator interleaved with this one) runs in its own
    mode.
    """
    times = times or StageTimes()
    device, dtype = engine.device, engine.dtype
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(1, thread_name_prefix="vidcolor-post") as post:
        for index, frames in enumerate(segments):
            ref = state = None
            t = time.perf_counter()
            # Each frame's pre-processing (RGB -> Lab at the working size, on the host) runs in
            # a thread ahead of the engine, like decoding; the worker is joined on leaving.
            with closing(prefetch(((frame, preset.prepare(frame.rgb)) for frame in frames),
                                  depth=batch_size)) as ready:
                for pairs in batched(ready, batch_size):
                    batch = [frame for frame, _ in pairs]
                    prepared = [p for _, p in pairs]
                    t = times.add("decode", t)
                    with torch.inference_mode():
                        labs_host = torch.cat([lab for lab, _ in prepared])
                        labs = to_device(labs_host, device, dtype)
                        t = times.add("preprocess", t)
                        if ref is None:
                            ref, state = begin(index, labs[:, :1])
                            t = time.perf_counter()  # begin() times itself
                        corr = engine.correspond(labs[:, :1], ref)
                        # One mean per frame, read back once for the whole batch (after its steps).
                        means = corr.confidence.float().flatten(1).mean(dim=1)
                        t = times.add("correspondence", t)
                        outputs = []
                        for i in range(len(batch)):
                            ab, state = engine.step(labs[i : i + 1, :1], corr[i], state)
                            outputs.append(to_host(ab))
                        confidences = means.tolist()
                    t = times.add("colorization", t)
                    for i, frame in enumerate(batch):
                        pending.append(post.submit(_finish, engine, preset, outputs[i],
                                                   labs_host[i : i + 1], prepared[i][1], frame,
                                                   confidences[i], times))
                    while len(pending) > len(batch):  # the previous batch, finished meanwhile
                        yield pending.popleft().result()
                    t = time.perf_counter()  # the consumer's time (encoding) is not ours
        while pending:
            yield pending.popleft().result()


def _finish(engine: Engine, preset: Any, ab: HostCopy, lab_host: torch.Tensor, context: Any,
            frame: Frame, confidence: float, times: StageTimes) -> ColorizedFrame:
    """Post-processing of one frame, in the worker thread (host tensors only)."""
    t = time.perf_counter()
    with torch.inference_mode():
        rgb = preset.finish(engine, ab.get(), lab_host, context, frame.rgb)
    times.add("postprocess", t)
    return ColorizedFrame(frame, rgb, confidence)
