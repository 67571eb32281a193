"""What ``vidcolor shots`` writes: the table, the JSON, and one sharp frame per shot.

Exported frames are named by their shot's start timecode with dashes for colons
(``00-01-02.500.png``, portable to every file system); ``colorize --ref-dir`` reads such a
folder back and pins each image to the shot that contains its time (``pinned_times``).
"""

from __future__ import annotations

import json
import re
from fractions import Fraction
from pathlib import Path
from typing import Iterable

from vidcolor.errors import InputError, OptionError
from vidcolor.shots import Shot
from vidcolor.shots.signature import analysis_luma, laplacian_variance

# The middle of a shot, away from its transitions: the representative frame is the sharpest
# frame whose position in the shot lies in this fraction range.
INTERIOR = (0.15, 0.85)
_TIMECODE = re.compile(r"^(?:(\d+)[:-])?(\d{1,2})[:-](\d{1,2}(?:\.\d+)?)$")


def timecode(seconds: float, sep: str = ":") -> str:
    """HH:MM:SS.mmm (or with another separator)."""
    millis = int(round(max(seconds, 0.0) * 1000))
    h, rest = divmod(millis, 3_600_000)
    m, rest = divmod(rest, 60_000)
    return f"{h:02d}{sep}{m:02d}{sep}{rest // 1000:02d}.{rest % 1000:03d}"


def parse_time(text: str) -> float:
    """Seconds ("12.5") or a timecode ("00:00:12.500", "00-00-12.500", "01:30") -> seconds."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        match = _TIMECODE.match(text)
        if not match:
            raise OptionError(f"{text!r} is not a time (use seconds or HH:MM:SS.mmm)") from None
        hours, minutes, seconds = match.groups()
        value = int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    if value < 0:
        raise OptionError(f"{text!r}: a time must be >= 0")
    return value


def shots_json(shots: list[Shot], fps: Fraction | None) -> dict:
    return {"fps": float(fps) if fps else None, "shots": [s.to_dict() for s in shots]}


def write_json(path: Path, shots: list[Shot], fps: Fraction | None) -> None:
    Path(path).write_text(json.dumps(shots_json(shots, fps), indent=2))


def table_rows(shots: list[Shot]) -> list[tuple[str, ...]]:
    return [(str(s.index), timecode(s.start), timecode(s.end), str(s.frames), s.transition or "")
            for s in shots]


def export_name(shot: Shot) -> str:
    return f"{timecode(shot.start, sep='-')}.png"


def export_frames(path: str | Path, shots: list[Shot], folder: Path, *,
                  start: float | None = None, duration: float | None = None,
                  max_frames: int | None = None) -> list[Path]:
    """Write the sharpest interior frame of each shot to ``folder`` (a second decoding pass:
    one frame per shot is held, so memory stays flat)."""
    from vidcolor.io.images import save_image
    from vidcolor.io.reader import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if not shots:
        return written
    best: tuple[float, object] | None = None
    current = 0
    with open_clip(path) as clip:
        for frame in clip.frames(start=start, duration=duration, max_frames=max_frames):
            while current < len(shots) and frame.index >= shots[current].end_frame:
                written.append(_save(folder, shots[current], best, save_image))
                best, current = None, current + 1
            if current >= len(shots):
                break
            shot = shots[current]
            position = (frame.index - shot.start_frame + 0.5) / shot.frames
            interior = INTERIOR[0] <= position <= INTERIOR[1] or shot.frames < 4
            sharpness = laplacian_variance(analysis_luma(frame.rgb)) if interior else -1.0
            if best is None or sharpness > best[0]:
                best = (sharpness, frame.rgb.copy())
        while current < len(shots):
            written.append(_save(folder, shots[current], best, save_image))
            best, current = None, current + 1
    return [p for p in written if p is not None]


def _save(folder: Path, shot: Shot, best, save_image) -> Path | None:
    if best is None:
        return None
    target = folder / export_name(shot)
    save_image(target, best[1])
    return target


def pinned_times(folder: Path) -> list[tuple[float, Path]]:
    """(time, image) for every image of an ``--export`` folder, by its timecode name."""
    from vidcolor.io.images import is_image_path, natural_sort_key

    if not folder.is_dir():
        raise InputError(f"{folder}: --ref-dir must be a folder of exported frames")
    found = []
    for image in sorted(folder.iterdir(), key=lambda p: natural_sort_key(p.name)):
        if image.name.startswith(".") or not is_image_path(image):
            continue
        try:
            found.append((parse_time(image.stem), image))
        except OptionError:
            raise InputError(f"{image}: a --ref-dir image must be named by its shot's start "
                             "timecode (HH-MM-SS.mmm, as `vidcolor shots --export` writes)") from None
    if not found:
        raise InputError(f"{folder}: no images named by timecode in --ref-dir")
    return found


def shots_of_times(shots: Iterable[Shot], times: Iterable[float], fps: Fraction | None
                   ) -> list[int | None]:
    """Index of the shot containing each time (half a frame of slack: timecodes are rounded
    to the millisecond), or None past the end."""
    shots = list(shots)
    slack = 0.5 / float(fps) if fps else 0.0005
    found = []
    for t in times:
        index = None
        for shot in shots:
            if shot.start - slack <= t < shot.end - slack:
                index = shot.index
                break
        if index is None and shots and shots[-1].end - slack <= t < shots[-1].end + slack:
            index = shots[-1].index
        found.append(index)
    return found
