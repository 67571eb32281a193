"""One long file colorized as several frame ranges (by different workers) and joined back.

A range ``[start, end)`` is colorized with the recurrence starting fresh at ``start``, as it
does at a shot cut, into a lossless intermediate: a PNG frame folder (exact for 8- and 16-bit
pictures). The join decodes the source once more and writes each colorized picture with its
source frame through the same writer a single run uses (``colorizer.open_output``), so the
timestamps, the luma plane and the audio/subtitle packets come from the source exactly once,
and the joined file equals a single process colorizing the same ranges in order.

Ranges start at shot cuts. The cuts come from a function of the video path (``CutFinder``):
``shot_cuts``, the shot detector's boundaries (``vidcolor.shots``), or one a test gives.
"""

from __future__ import annotations

import itertools
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from vidcolor.errors import ProcessingError

# Pieces shorter than this are merged into the previous one: each piece costs a task, a
# reference preparation and a decode of the file up to its start (about 10 s at 25 fps).
MIN_PIECE_FRAMES = 250
PARTS_FOLDER = ".vidcolor-parts"  # intermediates, in the output folder (shared with workers)
UNBOUNDED = 1 << 62  # the end frame of a range that runs to the end of the file

CutFinder = Callable[[Path], Iterable[int]]


@dataclass(frozen=True)
class FrameRange:
    """Frames ``start`` (inclusive) to ``end`` (exclusive; None = to the end of the file)."""

    start: int
    end: int | None

    @property
    def name(self) -> str:
        return f"{self.start:08d}-{'end' if self.end is None else f'{self.end:08d}'}"

    def __contains__(self, index: int) -> bool:
        return index >= self.start and (self.end is None or index < self.end)


def split_ranges(cuts: Iterable[int], min_frames: int = MIN_PIECE_FRAMES) -> list[FrameRange]:
    """Consecutive ranges covering the whole file, each starting at frame 0 or at a cut.

    A cut closer than ``min_frames`` to the previous range start is not used (the shorter
    shot stays with the one before it, as in a single run).
    """
    starts = [0]
    for cut in sorted(set(int(c) for c in cuts)):
        if cut - starts[-1] >= min_frames:
            starts.append(cut)
    ends: list[int | None] = [*starts[1:], None]
    return [FrameRange(a, b) for a, b in zip(starts, ends)]


def shot_cuts(video: Path) -> list[int]:
    """The first frame of every shot after the first: the shot detector's boundaries."""
    from vidcolor.shots import detect_shots

    return [shot.start_frame for shot in detect_shots(video)[1:]]


def parts_dir(output: Path) -> Path:
    """Where the ranges of ``output`` are kept until they are joined."""
    return output.parent / PARTS_FOLDER / output.name


def part_path(output: Path, frame_range: FrameRange) -> Path:
    return parts_dir(output) / frame_range.name


def remove_parts(output: Path) -> None:
    """Drop the intermediates of ``output`` (after the join, or before a fresh start)."""
    shutil.rmtree(parts_dir(output), ignore_errors=True)
    try:
        parts_dir(output).parent.rmdir()  # only when no other file's parts are left
    except OSError:
        pass


def colorize_range(colorizer, video: Path, references: list[Path], frame_range: FrameRange,
                   output: Path, *, mode: str, preset: str, size: tuple[int, int] | None,
                   shot_starts: Iterable[int] = (),
                   on_frame: Callable[[], None] | None = None) -> int:
    """Colorize frames ``frame_range`` of ``video`` into the range's PNG folder for
    ``output``, written atomically; returns the frame count. The recurrence restarts at the
    range's start and at each of ``shot_starts`` inside it, and each of these shots gets the
    one of ``references`` a single run would give it: in propagation mode the first
    reference seeds the film's first shot only, the others are matched (exemplar mode)."""
    from vidcolor.io import reader, writer
    from vidcolor.shots import Shot

    target = part_path(output, frame_range)
    target.parent.mkdir(parents=True, exist_ok=True)
    starts = [frame_range.start, *sorted(shot_starts)]
    ends = [*starts[1:], UNBOUNDED if frame_range.end is None else frame_range.end]
    shots = [Shot(index=i, start_frame=a, end_frame=b, start=0.0, end=0.0, transition=None)
             for i, (a, b) in enumerate(zip(starts, ends))]
    pins = {0: 0} if mode == "propagate" and frame_range.start == 0 else {}
    with reader.open_clip(video) as clip:
        # Frames are counted in decode order from the start, exactly as a single run sees
        # them (a seek could land elsewhere in files with broken timestamps).
        frames = itertools.islice(clip.frames(), frame_range.start, frame_range.end)
        with writer.open_writer(target, None, src_path=None, codec=writer.FRAME_FOLDER_CODEC,
                                overwrite=True) as out:
            for rgb in colorizer.colorize_shots(frames, shots, references, pins=pins, mode=mode,
                                                preset=preset, size=size):
                out.write(rgb)
                if on_frame is not None:
                    on_frame()
            if out.frames_written == 0:
                raise ProcessingError(f"{video}: no frame decodes in range "
                                      f"[{frame_range.start}, {frame_range.end})")
        return out.frames_written


def join_ranges(video: Path, ranges: list[FrameRange], output: Path, *, preset: str,
                codec: str, crf: int) -> int:
    """Write ``output`` from the colorized ranges and the source's own frames and streams, as
    ``Colorizer.colorize_video`` writes a single run. Returns the frame count."""
    from vidcolor.colorizer import open_output
    from vidcolor.io import reader, writer
    from vidcolor.io.images import load_image

    with reader.open_clip(video) as clip:
        with open_output(output, clip.info, video, preset=preset, codec=codec, crf=crf,
                         overwrite=True) as out:
            pieces = iter(ranges)
            piece = next(pieces)
            for frame in clip.frames():
                while frame.index not in piece:
                    piece = next(pieces, None)
                    if piece is None:
                        raise ProcessingError(f"{video}: frame {frame.index} is in no range")
                picture = part_path(output, piece) / writer.FRAME_NAME.format(
                    frame.index - piece.start)
                if not picture.is_file():
                    raise ProcessingError(f"{video}: colorized frame {frame.index} is missing "
                                          f"from {picture.parent}")
                out.write(load_image(picture, error=ProcessingError), frame)
        return out.frames_written
