"""Shots of an edited film: where they start and end, and how each one ends into the next.

    from vidcolor.shots import detect_shots
    for shot in detect_shots("film.mp4"):
        print(shot.index, shot.start_frame, shot.end_frame, shot.start, shot.end, shot.transition)

Frames are decoded by our own reader (``vidcolor.io.reader``) and reduced at once to a small
signature (``signature.py``); the detector (``detector.py``) keeps a bounded window of them, so
memory stays flat with the length of the film.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable

from vidcolor.io.frame import Frame
from vidcolor.shots.detector import CUT, DISSOLVE, FADE, Boundary, ShotDetector
from vidcolor.shots.signature import signature

__all__ = ["Shot", "detect_shots", "detect_in_frames", "shots_from_boundaries", "frame_seconds", "CUT",
           "DISSOLVE", "FADE"]


@dataclass(frozen=True)
class Shot:
    """Frames ``start_frame`` .. ``end_frame - 1`` (end exclusive) of the clip, counted from the
    first frame decoded; ``start``/``end`` in seconds of source time (``end`` is where the next
    shot starts, or the end of the last frame). ``transition`` says how this shot began:
    "cut", "dissolve", "fade", or None for the first shot."""

    index: int
    start_frame: int
    end_frame: int
    start: float
    end: float
    transition: str | None

    @property
    def frames(self) -> int:
        return self.end_frame - self.start_frame

    def contains_time(self, seconds: float) -> bool:
        return self.start <= seconds < self.end

    def to_dict(self) -> dict:
        return asdict(self)


def frame_seconds(frame: Frame, fps: Fraction | float | None) -> float:
    """Source time of a frame: its timestamp, else its index over the frame rate (or 1 fps)."""
    if frame.pts is not None and frame.time_base is not None:
        return float(frame.pts * frame.time_base)
    return frame.index / float(fps or 1)


def shots_from_boundaries(boundaries: list[Boundary], frame_count: int, first_time: float,
                          end_time: float) -> list[Shot]:
    """Shots between consecutive boundaries; the last one ends at ``end_time``."""
    starts = [Boundary(0, None, first_time)] + [b for b in boundaries if 0 < b.frame < frame_count]
    shots = []
    for i, boundary in enumerate(starts):
        following = starts[i + 1] if i + 1 < len(starts) else None
        shots.append(Shot(index=i, start_frame=boundary.frame,
                          end_frame=following.frame if following else frame_count,
                          start=boundary.time, end=following.time if following else end_time,
                          transition=boundary.transition))
    return shots


def detect_in_frames(frames: Iterable[Frame], fps: Fraction | float | None = None,
                     on_frame: Callable[[Frame], None] | None = None) -> list[Shot]:
    """Shots of a stream of frames (in order, ``Frame.index`` counting from 0)."""
    detector = ShotDetector(fps=float(fps) if fps else None)
    for frame in frames:
        detector.push(signature(frame.rgb), frame_seconds(frame, fps))
        if on_frame is not None:
            on_frame(frame)
    if detector.frame_count == 0:
        return []
    boundaries = detector.finish()
    end_time = detector.last_time() + 1.0 / float(fps or 1)
    return shots_from_boundaries(boundaries, detector.frame_count, detector.first_time(),
                                 end_time)


def detect_shots(path: str | Path, *, start: float | None = None,
                 duration: float | None = None, max_frames: int | None = None,
                 on_frame: Callable[[Frame], None] | None = None) -> list[Shot]:
    """Shots of a video file, frame folder or image (one pass, flat memory).

    ``start``/``duration``/``max_frames`` select the same window as ``colorize`` does; frame
    numbers then count from the window's first frame. Raises ``InputError`` like
    ``vidcolor.io.reader.open_clip`` for a file that cannot be read.
    """
    from vidcolor.io.reader import open_clip

    # swscale's fast YUV->RGB: the detector reads luma at 1/7 of the width, where the
    # accurate path's better chroma makes no difference (see reader.YUV_TO_RGB_FLAGS).
    with open_clip(path, fast_rgb=True) as clip:
        return detect_in_frames(clip.frames(start=start, duration=duration,
                                            max_frames=max_frames),
                                fps=clip.info.fps, on_frame=on_frame)
