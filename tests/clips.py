"""Tiny synthetic clips for tests, written with PyAV (no files checked in, no network).

Every helper returns what it wrote (timestamps, pictures, packets) so a test can compare what a
reader gives back with an independent record of the truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import numpy as np

AUDIO_SAMPLE_RATE = 48_000
AUDIO_FRAME_SAMPLES = 1024  # AAC's fixed frame length


@dataclass
class MadeClip:
    """What ``make_clip`` wrote: the ground truth a test compares against."""

    path: Path
    width: int  # stored (coded) size, before any rotation metadata
    height: int
    pts: list[int]
    time_base: Fraction
    pix_fmt: str
    codec: str
    rgb: list[np.ndarray] = field(default_factory=list)  # stored orientation, as fed to the encoder
    subtitle_texts: list[str] = field(default_factory=list)

    @property
    def times(self) -> list[Fraction]:
        return [p * self.time_base for p in self.pts]


def pattern_frame(index: int, width: int, height: int, bit_depth: int = 8) -> np.ndarray:
    """A smooth, moving, colourful picture (HxWx3): gradients plus a square that moves.

    Smooth content keeps lossy codecs close to the input, so tests can compare pictures.
    """
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 0.5 + 0.45 * np.sin(2 * np.pi * (x / max(width, 1) + 0.05 * index))
    g = y / max(height - 1, 1)
    b = 0.5 + 0.5 * np.sin(2 * np.pi * (x + y + 3 * index) / max(width + height, 1))
    rgb = np.stack([r, g, b], axis=-1)
    side = max(min(width, height) // 4, 1)
    x0 = (3 * index) % max(width - side, 1)
    rgb[height // 3 : height // 3 + side, x0 : x0 + side] = (0.9, 0.1, 0.2)
    peak = (1 << 16) - 1 if bit_depth > 8 else 255
    dtype = np.uint16 if bit_depth > 8 else np.uint8
    return np.round(rgb * peak).astype(dtype)


def _container_subtitle_codec(path: Path) -> str:
    return "mov_text" if path.suffix.lower() in (".mp4", ".mov", ".m4v") else "subrip"


def _subtitle_payload(codec: str, text: str) -> bytes:
    data = text.encode("utf-8")
    if codec == "mov_text":  # 3GPP timed text: 16-bit big-endian length, then the text
        return len(data).to_bytes(2, "big") + data
    return data


def make_clip(
    path: str | Path,
    n_frames: int = 8,
    size: tuple[int, int] = (64, 48),
    fps: int | Fraction = 25,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    pix_fmt: str = "yuv420p",
    codec: str = "libx264",
    audio: bool = False,
    subtitles: bool = False,
    rotation: int | None = None,
    color_tags: dict[str, int] | None = None,
    sample_aspect_ratio: Fraction | None = None,
    options: dict[str, str] | None = None,
    attachments: dict[str, bytes] | None = None,
) -> MadeClip:
    """Write a small video (``size`` = (width, height), stored orientation) and return its truth.

    ``pts`` (in ``time_base`` units) makes a variable-frame-rate clip; by default frames are
    1/fps apart. ``audio`` adds a stereo AAC sine track covering the video; ``subtitles`` adds a
    text stream (subrip in Matroska, mov_text in MP4/MOV) with one cue per two frames.
    ``rotation`` writes display-matrix metadata (degrees counter-clockwise, PyAV's convention).
    ``color_tags`` sets encoder tags, e.g. ``{"colorspace": 1, "color_range": 1}``.
    ``attachments`` (Matroska only): file name -> bytes, stored as attachment streams.
    """
    path = Path(path)
    width, height = size
    fps = Fraction(fps)
    time_base = time_base or (1 / fps)
    if pts is None:
        step = (1 / fps) / time_base
        if step.denominator != 1:
            raise ValueError(f"time_base {time_base} cannot express 1/{fps} exactly")
        pts = [int(i * step) for i in range(n_frames)]
    pts = list(pts)
    if len(pts) != n_frames:
        raise ValueError(f"{len(pts)} pts for {n_frames} frames")
    depth = av.VideoFormat(pix_fmt).components[0].bits

    made = MadeClip(path, width, height, pts, time_base, pix_fmt, codec)
    end_time = (pts[-1] * time_base) + 1 / fps
    with av.open(str(path), "w") as out:
        video = out.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        video.time_base = time_base
        video.codec_context.time_base = time_base
        if codec in ("libx264", "libx265"):
            video.options = {"crf": "12", "preset": "veryfast", **(options or {})}
            if codec == "libx265":
                video.options["x265-params"] = "log-level=error"
        elif options:
            video.options = dict(options)
        for name, value in (color_tags or {}).items():
            setattr(video.codec_context, name, value)
        if sample_aspect_ratio is not None:
            video.codec_context.sample_aspect_ratio = sample_aspect_ratio
        if rotation is not None:
            video.set_display_rotation(rotation)

        audio_stream = None
        if audio:
            audio_stream = out.add_stream("aac", rate=AUDIO_SAMPLE_RATE)
            audio_stream.layout = "stereo"
        subtitle_stream = None
        if subtitles:
            sub_codec = _container_subtitle_codec(path)
            subtitle_stream = out.add_mux_stream(sub_codec)
            subtitle_stream.time_base = Fraction(1, 1000)

        for name, data in (attachments or {}).items():
            out.add_attachment(name, "application/octet-stream", data)

        audio_pts = 0
        audio_end = int(end_time * AUDIO_SAMPLE_RATE)
        for i, p in enumerate(pts):
            rgb = pattern_frame(i, width, height, depth)
            made.rgb.append(rgb)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if depth > 8 else "rgb24")
            frame = frame.reformat(format=pix_fmt)
            frame.pts, frame.time_base = p, time_base
            out.mux(video.encode(frame))
            frame_end = pts[i + 1] * time_base if i + 1 < n_frames else end_time
            audio_until = min(audio_end, frame_end * AUDIO_SAMPLE_RATE)
            while audio_stream is not None and audio_pts < audio_until:
                t = (audio_pts + np.arange(AUDIO_FRAME_SAMPLES)) / AUDIO_SAMPLE_RATE
                tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
                samples = np.stack([tone, 0.5 * tone]).astype(np.float32)
                aframe = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
                aframe.sample_rate = AUDIO_SAMPLE_RATE
                aframe.pts, aframe.time_base = audio_pts, Fraction(1, AUDIO_SAMPLE_RATE)
                out.mux(audio_stream.encode(aframe))
                audio_pts += AUDIO_FRAME_SAMPLES
        out.mux(video.encode(None))
        if audio_stream is not None:
            out.mux(audio_stream.encode(None))
        if subtitle_stream is not None:
            sub_codec = _container_subtitle_codec(path)
            for cue, start in enumerate(pts[::2]):
                text = f"cue {cue}: line {cue * 7}"
                packet = av.Packet(_subtitle_payload(sub_codec, text))
                ms = int(start * time_base * 1000)
                packet.pts = packet.dts = ms
                packet.duration = int(1000 / fps)
                packet.time_base = Fraction(1, 1000)
                packet.stream = subtitle_stream
                out.mux(packet)
                made.subtitle_texts.append(text)
    return made


def make_audio_only(path: str | Path, seconds: float = 0.5) -> Path:
    """An AAC file with no video stream (readers must refuse it)."""
    path = Path(path)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=AUDIO_SAMPLE_RATE)
        stream.layout = "stereo"
        n = int(seconds * AUDIO_SAMPLE_RATE) // AUDIO_FRAME_SAMPLES
        for i in range(n):
            samples = np.zeros((2, AUDIO_FRAME_SAMPLES), np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
            frame.sample_rate = AUDIO_SAMPLE_RATE
            frame.pts = i * AUDIO_FRAME_SAMPLES
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def make_image_folder(
    folder: str | Path,
    names: Sequence[str],
    size: tuple[int, int] = (32, 24),
    bit_depth: int = 8,
) -> dict[str, np.ndarray]:
    """Write one PNG per name (8- or 16-bit RGB) and return name -> the RGB array written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    width, height = size
    written = {}
    for i, name in enumerate(names):
        rgb = pattern_frame(i, width, height, bit_depth)
        write_png(folder / name, rgb)
        written[name] = rgb
    return written


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write RGB uint8 or uint16 as PNG with PyAV's encoder (independent of Pillow's writer)."""
    fmt = "rgb48le" if rgb.dtype == np.uint16 else "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=fmt)
    target = "rgb48be" if rgb.dtype == np.uint16 else "rgb24"
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], target
        out.mux(stream.encode(frame.reformat(format=target)))
        out.mux(stream.encode(None))


def read_packets(path: str | Path, kind: str) -> list[list[bytes]]:
    """Payload bytes of every packet of every stream of ``kind`` ("audio", "subtitle")."""
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type == kind]
        found: list[list[bytes]] = [[] for _ in streams]
        if not streams:  # demux() with no stream means every stream
            return found
        positions = {s.index: i for i, s in enumerate(streams)}
        for packet in container.demux(*streams):
            if packet.size:
                found[positions[packet.stream.index]].append(bytes(packet))
    return found


def decode_planes(path: str | Path) -> list[tuple[str, list[np.ndarray]]]:
    """(pix_fmt, [plane arrays]) of every decoded video frame, padding removed."""
    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            planes = []
            fmt = frame.format
            itemsize = 2 if fmt.components[0].bits > 8 else 1
            dtype = np.dtype("<u2") if itemsize == 2 else np.uint8
            for plane in frame.planes:
                row = np.frombuffer(plane, dtype=dtype).reshape(plane.height, -1)
                planes.append(row[:, : plane.width].copy())
            out.append((fmt.name, planes))
    return out
