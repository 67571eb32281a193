"""``Colorizer``: the public Python API. It owns engine, device and precision and runs the loop.

    from vidcolor import Colorizer
    Colorizer(engine="classic").colorize_video("old.mp4", "photo.jpg", "old.color.mp4")
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from contextlib import ExitStack, closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from vidcolor import memory
from vidcolor.pipeline import loop
from vidcolor.devices import configure_cuda, resolve_device, resolve_precision
from vidcolor.errors import (
    OptionError,
    ProcessingError,
    VidcolorError,
    WeightsMissingError,
    unexpected_failure,
)
from vidcolor.options import ENGINES, MODES, PRESETS
from vidcolor.io.frame import Frame
from vidcolor.io.prefetch import WriteBehind, prefetch
from vidcolor.signals import SignalLatch
from vidcolor.pipeline.presets import check_size, make_preset
from vidcolor.pipeline.reference import is_gray, load_reference

# A run of poorly matched frames shorter than this is not worth a warning (flicker of a cut).
LOW_CONFIDENCE_MIN_SECONDS = 0.5


@dataclass
class RunSummary:
    """What a run did: returned by ``colorize_video`` and written by ``--report``."""

    input: str
    output: str
    engine: str
    preset: str
    mode: str
    device: str
    precision: str
    frames: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    peak_memory_mb: float | None = None  # None where the platform cannot tell: left out
    confidence: list[float] = field(default_factory=list)
    decode_errors: int = 0
    truncated: bool = False
    warnings: list[str] = field(default_factory=list)
    input_probe: dict[str, Any] = field(default_factory=dict)
    output_probe: dict[str, Any] = field(default_factory=dict)
    shots: list[dict[str, Any]] = field(default_factory=list)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_json(self, path: Path) -> None:
        """Written atomically, like the outputs."""
        from vidcolor.io.atomic import write_text_atomic

        data = {k: v for k, v in asdict(self).items() if v is not None} | {"fps": self.fps}
        write_text_atomic(Path(path), json.dumps(data, indent=2, default=str))


@dataclass(frozen=True)
class FileJob:
    """What one ``colorize_video`` call was asked to do (its keyword arguments, resolved)."""

    src: Path
    ref: Any
    dst: Path | None
    mode: str
    preset: str
    size: tuple[int, int] | None
    start: float | None
    duration: float | None
    max_frames: int | None
    codec: str
    crf: int
    overwrite: bool
    drop_unsupported_streams: bool
    report: Path | None
    compare: Path | None
    batch_size: int
    quiet: bool
    on_frame: Callable[[], None] | None = None  # after each written frame (cluster progress)
    ref_dir: Path | None = None
    detect_shots: bool = True


def check_choice(option: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise OptionError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_run_options(mode: str, preset: str) -> None:
    """Checked before anything is loaded, so a typo fails at once."""
    check_choice("--mode", mode, MODES)
    check_choice("--preset", preset, PRESETS)


def reset_peak_memory(device: torch.device) -> None:
    """Start the peaks over (per file of a batch): the process's RSS mark where the OS allows
    it, and the GPU's."""
    memory.reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak resident memory of this process (plus the GPU's peak since the last reset), in
    MiB; None where the platform cannot tell (Windows)."""
    rss_bytes = memory.peak_rss_bytes()
    if rss_bytes is None:
        return None
    if device.type == "cuda":
        rss_bytes += torch.cuda.max_memory_allocated(device)
    return rss_bytes / 2**20


def low_confidence_ranges(confidence: list[float], times: list[float], threshold: float,
                          min_seconds: float = LOW_CONFIDENCE_MIN_SECONDS) -> list[tuple[float, float]]:
    """Time ranges (start, end) where per-frame confidence stays below ``threshold``."""
    ranges, start = [], None
    for i, c in enumerate(confidence + [float("inf")]):
        if c < threshold and start is None:
            start = i
        elif c >= threshold and start is not None:
            t0, t1 = times[start], times[i - 1]
            if t1 - t0 >= min_seconds or (start == 0 and i == len(confidence)):
                ranges.append((t0, t1))
            start = None
    return ranges


def timecode(seconds: float) -> str:
    m, s = divmod(max(seconds, 0.0), 60)
    h, m = divmod(int(m), 60)
    return f"{h:02d}:{m:02d}:{s:06.3f}"


class Colorizer:
    """Engine + device + precision, loaded once; colorize any number of clips with it."""

    def __init__(self, engine: str = "auto", device: str = "auto", precision: str = "auto",
                 weights_dir: str | Path | None = None,
                 notify: Callable[[str], None] | None = None):
        check_choice("--engine", engine, ENGINES)
        self.device = resolve_device(device)
        self.dtype, self.autocast = resolve_precision(precision, self.device)
        self.precision = precision
        self.notify = notify or (lambda message: None)
        self._device_chosen = device != "auto"
        self.engine = self._build_engine(engine, Path(weights_dir) if weights_dir else None)
        self.device = self.engine.device
        configure_cuda(self.device)

    def _build_engine(self, name: str, weights_dir: Path | None):
        from vidcolor.weights import cache

        directory = weights_dir or cache.installed_dir()
        installed = weights_dir is not None or cache.is_installed()
        if name == "devc" and not installed:
            raise WeightsMissingError(
                f"{directory}: the devc engine's weights are not installed; run "
                "`vidcolor download-weights` (or `--from-file ZIP` on an offline machine)"
            )
        if name == "classic" or (name == "auto" and not installed):
            if name == "auto":
                self.notify(
                    "No devc weights installed: using the classic engine (no weights needed). "
                    "Run `vidcolor download-weights` for the paper's network."
                )
            from vidcolor.engines.classic.engine import ClassicEngine

            # Its colorization step runs numpy on the host: under --device auto it stays there.
            device = self.device if self._device_chosen else torch.device("cpu")
            return ClassicEngine(device=device, dtype=self.dtype)
        from vidcolor.engines.devc.engine import DevcEngine

        return DevcEngine.from_directory(directory, device=self.device, dtype=self.dtype,
                                         autocast_dtype=self.autocast)

    # -- arrays ------------------------------------------------------------------------------

    def colorize_frames(self, frames: Iterable[np.ndarray], ref: str | Path | np.ndarray, *,
                        mode: str = "exemplar", preset: str = "default",
                        size: tuple[int, int] | None = None,
                        batch_size: int = loop.DEFAULT_BATCH_SIZE) -> Iterator[np.ndarray]:
        """Colorize HxWx3 uint8/uint16 RGB arrays (one clip, in order); yields RGB arrays."""
        iterator = iter(frames)
        first = next(iterator, None)
        if first is None:
            return
        wrapped = (Frame(index=i, rgb=np.asarray(rgb))
                   for i, rgb in enumerate(itertools.chain([first], iterator)))
        for out in self._stream(wrapped, (first.shape[0], first.shape[1]), ref, mode=mode,
                                preset=preset, size=size, batch_size=batch_size):
            yield out.rgb

    def colorize_image(self, img: str | Path | np.ndarray, ref: str | Path | np.ndarray,
                       **options) -> np.ndarray:
        """Colorize one picture (a path or an HxWx3 array)."""
        if not isinstance(img, np.ndarray):
            from vidcolor.errors import InputError
            from vidcolor.io.images import load_image

            img = load_image(Path(img), error=InputError)
        return next(self.colorize_frames([img], ref, **options))

    def _stream(self, frames: Iterable[Frame], source_hw: tuple[int, int], ref, *, mode: str,
                preset: str, size: tuple[int, int] | None, batch_size: int,
                times: loop.StageTimes | None = None) -> Iterator[loop.ColorizedFrame]:
        check_run_options(mode, preset)
        reference = load_reference(ref)
        if is_gray(reference):
            self.notify(f"{ref if not isinstance(ref, np.ndarray) else 'reference'}: the reference "
                        "is grayscale, so there are no colors to transfer; the output will stay gray")
        plan = make_preset(preset, self.engine, source_hw, size)
        yield from loop.colorize_stream(self.engine, plan, frames, reference,
                                        propagate=mode == "propagate", batch_size=batch_size,
                                        times=times)

    def colorize_shots(self, frames: Iterable[Frame], shots: list, refs: Iterable[Any], *,
                       pins: dict[int, int] | None = None, mode: str = "exemplar",
                       preset: str = "default", size: tuple[int, int] | None = None,
                       batch_size: int = loop.DEFAULT_BATCH_SIZE) -> Iterator[np.ndarray]:
        """Decoded ``frames`` whose shots are already known (``vidcolor.shots.Shot``, indexed
        by their place in ``shots``, frames numbered as ``Frame.index`` counts them): the
        recurrence restarts at each shot and each gets one of ``refs``, chosen as
        ``colorize_video`` chooses it. ``pins`` maps a shot's index to the index of its pinned
        reference (in propagation mode, the keyframe that seeds it). A cluster worker
        colorizes its range of a film this way."""
        from vidcolor.pipeline.film import FilmPlan, gather_references

        check_run_options(mode, preset)
        iterator = iter(frames)
        first = next(iterator, None)
        if first is None:
            return
        film = FilmPlan(list(shots), gather_references(list(refs), None), dict(pins or {}))
        for out in self._stream_film(itertools.chain([first], iterator), first.rgb.shape[:2],
                                     film, mode=mode, preset=preset, size=size,
                                     batch_size=batch_size, times=None):
            yield out.rgb

    # -- files -------------------------------------------------------------------------------

    def colorize_video(self, src: str | Path, ref: Any,
                       dst: str | Path | None = None, *, mode: str = "exemplar",
                       preset: str = "default", size: tuple[int, int] | None = None,
                       start: float | None = None, duration: float | None = None,
                       max_frames: int | None = None, codec: str = "h264", crf: int = 18,
                       overwrite: bool = False, drop_unsupported_streams: bool = False,
                       report: str | Path | None = None, compare: str | Path | None = None,
                       batch_size: int = loop.DEFAULT_BATCH_SIZE, quiet: bool = True,
                       on_frame: Callable[[], None] | None = None,
                       ref_dir: str | Path | None = None, detect_shots: bool = True
                       ) -> RunSummary:
        """Colorize a video file, a folder of frames or a single image into ``dst``.

        ``ref``: one reference (path or array) or a list of them; an item "TIME=IMAGE" pins
        IMAGE to the shot containing TIME (``pipeline/film.py``); ``ref_dir`` adds a
        ``vidcolor shots --export`` folder, pinned by name. The video is cut into shots
        (``detect_shots``; never with the official preset, which reproduces the paper's
        script) and each shot colorized on its own with its best or pinned reference.
        Every output (``dst``, ``compare``, ``report``) is checked before any work, written
        beside its target and renamed only on success; audio and subtitle streams are copied
        packet for packet. Any failure is a ``VidcolorError`` naming ``src``. ``on_frame``
        is called after each written frame (the progress of a cluster worker).
        """
        job = FileJob(src=Path(src), ref=ref, dst=None if dst is None else Path(dst), mode=mode,
                      preset=preset, size=size, start=start, duration=duration,
                      max_frames=max_frames, codec=codec, crf=crf, overwrite=overwrite,
                      drop_unsupported_streams=drop_unsupported_streams,
                      report=None if report is None else Path(report),
                      compare=None if compare is None else Path(compare),
                      batch_size=batch_size, quiet=quiet, on_frame=on_frame,
                      ref_dir=None if ref_dir is None else Path(ref_dir),
                      detect_shots=detect_shots)
        try:
            return self._colorize_file(job)
        except VidcolorError:
            raise
        except Exception as error:  # OSError, MemoryError, CUDA OOM, a library's RuntimeError
            raise unexpected_failure(job.src, error) from error

    def _colorize_file(self, job: "FileJob") -> RunSummary:
        from vidcolor.io import reader
        from vidcolor.io.naming import default_output

        check_run_options(job.mode, job.preset)
        check_size(job.preset, self.engine, job.size)
        reset_peak_memory(self.device)
        with reader.open_clip(job.src) as clip:
            info = clip.info
            job = dataclasses.replace(job, dst=job.dst or default_output(job.src, info.kind))
            self._check_outputs(job, info)
            film = self._plan_film(job.src, job.ref, job.ref_dir, mode=job.mode,
                                   start=job.start, duration=job.duration,
                                   max_frames=job.max_frames,
                                   detect=job.detect_shots and job.preset != "official")
            summary = RunSummary(input=str(job.src), output=str(job.dst), engine=self.engine.name,
                                 preset=job.preset, mode=job.mode, device=str(self.device),
                                 precision=precision_name(self.dtype, self.autocast),
                                 input_probe=probe_dict(info))
            times = stage_times(self.device, job.report is not None)
            started = time.perf_counter()
            timestamps = self._encode(job, clip, summary, times, film)
            summary.frames = len(summary.confidence)
            summary.seconds = time.perf_counter() - started
            summary.decode_errors = getattr(clip, "decode_errors", 0)
            summary.truncated = getattr(clip, "truncated", False)
        summary.stage_seconds = dict(times.seconds) | {"shots": film.detect_seconds}
        summary.peak_memory_mb = peak_memory_mb(self.device)
        self._warn_about_input(summary, timestamps, film)
        if job.report is not None:
            self._write_report(summary, job.report)
        return summary

    def _check_outputs(self, job: "FileJob", info: Any) -> None:
        """Refuse, before any work, an output, preview or report that cannot be written."""
        from vidcolor.io import writer
        from vidcolor.io.atomic import check_file_target

        for message in writer.check_output(job.dst, src=job.src, info=info,
                                           overwrite=job.overwrite, codec=job.codec,
                                           drop_unsupported_streams=job.drop_unsupported_streams):
            self.notify(message)
        if job.compare is not None:
            writer.check_output(job.compare, src=job.src, info=info, overwrite=job.overwrite,
                                codec=job.codec, drop_unsupported_streams=True)
        if job.report is not None:
            outputs = tuple(p for p in (job.src, job.dst, job.compare) if p is not None)
            check_file_target(job.report, "report", not_same_as=outputs)

    def _encode(self, job: "FileJob", clip: Any, summary: RunSummary,
                times: loop.StageTimes, film) -> list[float]:
        """The frame loop: decode ahead, colorize, write output (and preview); returns each
        written frame's time. A failure or a signal aborts every writer (nothing at the target)."""
        from vidcolor.io import writer
        from vidcolor.progress import frame_progress

        info = clip.info
        trimmed = job.start is not None or job.duration is not None or job.max_frames is not None
        square = dataclasses.replace(info, sample_aspect_ratio=None)  # resampled: square pixels
        timestamps: list[float] = []
        # A signal is raised between frames, or once the stack below is closed: never inside
        # a thread's join or a writer's close (signals.py).
        with SignalLatch() as latch, ExitStack() as stack:  # closed in reverse: decoder first
            out = stack.enter_context(open_output(
                job.dst, info, job.src, preset=job.preset, codec=job.codec, crf=job.crf,
                overwrite=job.overwrite, trimmed=trimmed,
                drop_unsupported_streams=job.drop_unsupported_streams))
            preview = None if job.compare is None else stack.enter_context(writer.open_writer(
                job.compare, square, src_path=None, codec=job.codec, crf=job.crf,
                overwrite=job.overwrite, keep_luma=False, trimmed=trimmed,
                drop_unsupported_streams=True))
            bar = stack.enter_context(frame_progress(job.src.name,
                                                     expected_frames(info, job.max_frames),
                                                     quiet=job.quiet))
            # Decoded ahead in a thread; closed (worker joined) before the clip is closed.
            decoded = stack.enter_context(closing(prefetch(
                clip.frames(start=job.start, duration=job.duration, max_frames=job.max_frames),
                depth=job.batch_size)))
            # Encoded behind in a thread; closed first (every queued frame written or, on a
            # failure, dropped) before the writers are finished or aborted.
            encoder = stack.enter_context(WriteBehind(depth=job.batch_size))
            for result in self._stream_film(decoded, (info.height, info.width), film,
                                            mode=job.mode, preset=job.preset, size=job.size,
                                            batch_size=job.batch_size, times=times):
                latch.check()
                encoder.submit(write_result, out, preview, result, times)
                summary.confidence.append(result.confidence)
                timestamps.append(frame_time(result.source, info))
                bar.advance()
                if job.on_frame is not None:
                    job.on_frame()
            if not summary.confidence:
                raise ProcessingError(f"{job.src}: no frame could be decoded in the requested range")
            encoder.close()  # every frame encoded
            latch.check()  # a signal until here: nothing is committed
        return timestamps

    def _warn_about_input(self, summary: RunSummary, timestamps: list[float], film) -> None:
        self._report_shots(summary, film, timestamps)
        if summary.decode_errors:
            self._warn(summary, f"{summary.input}: {summary.decode_errors} corrupt frame(s) "
                                "could not be decoded and were skipped")
        if summary.truncated:
            self._warn(summary, f"{summary.input}: the file is truncated; colorized the "
                                f"{summary.frames} frame(s) that decode")

    def _write_report(self, summary: RunSummary, path: Path) -> None:
        from vidcolor.io import reader
        from vidcolor.io.atomic import remove_stale_partials

        try:
            with reader.open_clip(Path(summary.output)) as written:
                summary.output_probe = probe_dict(written.info)
        except Exception as error:  # the probe must not fail a finished run
            summary.output_probe = {"error": str(error)}
        remove_stale_partials(path)  # a killed earlier run's temporary report
        summary.to_json(path)

    # -- edited films (pipeline/film.py, pipeline/shots.py) ---------------------------------------

    def _plan_film(self, src: Path, ref, ref_dir, *, mode: str, start, duration, max_frames,
                   detect: bool):
        from vidcolor.pipeline.film import gather_references, plan_film

        refs = list(ref) if isinstance(ref, (list, tuple)) else ([] if ref is None else [ref])
        references = gather_references(refs, ref_dir)
        for reference in references:
            if is_gray(reference.rgb):
                self.notify(f"{reference.label}: the reference is grayscale, so there are no "
                            "colors to transfer; the output will stay gray")
        return plan_film(src, references, start=start, duration=duration,
                         max_frames=max_frames, detect=detect, propagate=mode == "propagate",
                         notify=self.notify)

    def _stream_film(self, frames, source_hw, film, *, mode: str, preset: str, size,
                     batch_size: int, times) -> Iterator[loop.ColorizedFrame]:
        from vidcolor.pipeline.shots import colorize_shots

        plan = make_preset(preset, self.engine, source_hw, size)
        propagate = mode == "propagate"

        def on_shot(choice) -> None:
            film.choices.append(choice)
            if propagate and not choice.propagated:
                self.notify(f"shot {choice.index} (frames {choice.start_frame}-"
                            f"{choice.end_frame - 1}) has no pinned keyframe: colorizing it in "
                            f"exemplar mode with {choice.reference}")

        yield from colorize_shots(self.engine, plan, frames, film.shots, film.references,
                                  film.pins, propagate=propagate, batch_size=batch_size,
                                  times=times, on_shot=on_shot)

    def _report_shots(self, summary: RunSummary, film, timestamps: list[float]) -> None:
        """The report's "shots" list; one warning per poorly matched shot (engines whose
        ``reference_match`` separates references), else the per-frame confidence ranges."""
        for choice in film.choices:
            choice.end_frame = min(choice.end_frame, summary.frames)
        summary.shots = [choice.to_dict() for choice in film.choices]
        threshold = self.engine.low_match
        if threshold is None:
            self._warn_low_confidence(summary, timestamps)
            return
        for choice in film.choices:
            if choice.confidence >= threshold or choice.start_frame >= len(timestamps):
                continue
            first = timestamps[choice.start_frame]
            last = timestamps[max(choice.start_frame, choice.end_frame - 1)]
            self._warn(summary, f"{summary.input}: shot {choice.index}: the reference matches "
                                f"poorly at {timecode(first)}-{timecode(last)} (best: "
                                f"{choice.reference}, match {choice.confidence:.2f} below "
                                f"{threshold}); give a reference of that scene")

    def _warn(self, summary: RunSummary, message: str) -> None:
        summary.warnings.append(message)
        self.notify(message)

    def _warn_low_confidence(self, summary: RunSummary, timestamps: list[float]) -> None:
        threshold = self.engine.low_confidence
        if threshold is None or not summary.confidence:
            return
        ranges = low_confidence_ranges(summary.confidence, timestamps, threshold)
        if ranges:
            spans = ", ".join(f"{timecode(a)}-{timecode(b)}" for a, b in ranges)
            self._warn(summary, f"{summary.input}: the reference matches poorly at {spans} "
                                f"(mean confidence below {threshold}); try a reference closer "
                                "to that shot")


def open_output(dst: Path, info: Any, src: Path, *, preset: str, codec: str, crf: int,
                overwrite: bool, trimmed: bool = False, drop_unsupported_streams: bool = False):
    """The writer of a colorized video: under the default preset the source's geometry and
    its luma plane are kept; other presets resample, so their pixels are square. Shared by
    ``colorize_video`` and the cluster's join of colorized ranges (same output either way)."""
    from vidcolor.io import writer

    keep_luma = preset == "default"
    square = dataclasses.replace(info, sample_aspect_ratio=None)
    return writer.open_writer(dst, info if keep_luma else square, src_path=src, codec=codec,
                              crf=crf, overwrite=overwrite, keep_luma=keep_luma, trimmed=trimmed,
                              drop_unsupported_streams=drop_unsupported_streams)
def write_result(out, preview, result: loop.ColorizedFrame, times: loop.StageTimes) -> None:
    """Encode one result (and its side-by-side preview); runs in the encode thread."""
    from vidcolor.io.preview import side_by_side

    t = time.perf_counter()
    out.write(result.rgb, result.source)
    if preview is not None:
        preview.write(side_by_side(result.source.rgb, result.rgb), result.source)
    times.add("encode", t)


def stage_times(device: torch.device, report: bool) -> loop.StageTimes:
    """Per-stage timings; synchronised on a GPU only when a report asks for them."""
    if device.type == "cuda" and report:
        return loop.StageTimes(synchronize=lambda: torch.cuda.synchronize(device))
    return loop.StageTimes()


def precision_name(dtype: torch.dtype, autocast: torch.dtype | None) -> str:
    name = str(autocast or dtype).removeprefix("torch.")
    return f"{name} autocast" if autocast is not None else name


def expected_frames(info: Any, max_frames: int | None) -> int | None:
    count = info.frame_count
    if max_frames is not None:
        return max_frames if count is None else min(count, max_frames)
    return count


def frame_time(frame: Frame, info: Any) -> float:
    if frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * frame.time_base)
    fps = info.fps or 1
    return float(frame.index / fps)


def probe_dict(info: Any) -> dict[str, Any]:
    return {k: (str(v) if not isinstance(v, (int, float, str, bool, type(None))) else v)
            for k, v in asdict(info).items()}
