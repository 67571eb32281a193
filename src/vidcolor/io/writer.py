"""Write colorized frames as a video, a PNG frame folder or one image, atomically.

A video output keeps everything of the source that colorization does not change: each frame's
timestamp (variable frame rate included), the frame rate, colour tags, sample aspect ratio and
rotation metadata; the audio and subtitle streams are copied packet for packet (``remux``);
and, when the output has the source's size and pixel format, the luma plane is the source's
own, bit for bit, so only U and V change. 10-bit in gives 10-bit out.

Everything is written to a hidden temporary file (or folder) beside the target and renamed
over it only when complete (``io/atomic.py``). Any failure, Ctrl-C included, removes the
temporary file: the target path never holds a partial result.
"""

from __future__ import annotations

import io
import contextlib
import os
import re
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidcolor.color.depth import convert_depth
from vidcolor.errors import OutputError, ProcessingError
from vidcolor.options import CODECS
from vidcolor.io import one_line_cause
from vidcolor.io.atomic import check_parent_writable, remove_stale_partials, temp_beside
from vidcolor.io.frame import Frame
from vidcolor.io.images import IMAGE_EXTENSIONS, write_image_file
from vidcolor.io.reader import ClipInfo, KIND_VIDEO, bit_depth_of
from vidcolor.io.remux import PacketCopier, StreamPlan, plan_stream_copy

# Output container by file extension (FFmpeg muxer names).
VIDEO_CONTAINERS = {
    ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi",
    ".webm": "webm",
}
# Our codec names -> FFmpeg encoders. "png" is not here: it means a PNG frame folder.
VIDEO_ENCODERS = {"h264": "libx264", "h265": "libx265", "ffv1": "ffv1"}
FRAME_FOLDER_CODEC = "png"

# mp4/mov: index (moov) first, so the file plays while downloading and survives a cut tail.
# Matroska: keep negative timestamps (AAC priming packets start before 0) instead of
# shifting every stream later, so each video frame keeps its source time exactly.
CONTAINER_OPTIONS = {
    "mp4": {"movflags": "+faststart"},
    "mov": {"movflags": "+faststart"},
    "matroska": {"avoid_negative_ts": "disabled"},
}
DEFAULT_CRF = 18  # x264/x265 constant quality: visually lossless for most material
X26X_PRESET = "medium"  # the encoders' own default speed/size trade-off
# Frame rate for outputs whose input has none (frame folders, images): FFmpeg's image2
# demuxer assumes the same 25 fps for an image sequence.
STILLS_FPS = Fraction(25)
# Stills carry no colour tags; our RGB is sRGB, so say BT.709 (same primaries) limited range.
STILLS_COLOR_TAGS = {"colorspace": 1, "color_primaries": 1, "color_trc": 1, "color_range": 1}
FRAME_NAME = "{:05d}.png"  # 00000.png, 00001.png, ... (more digits past 99999)
_FRAME_NAME_RE = re.compile(r"^\d{5,}\.png$")
UNSPECIFIED_COLOR = 2  # AVCOL_SPC/PRI/TRC_UNSPECIFIED
UNSPECIFIED_RANGE = 0  # AVCOL_RANGE_UNSPECIFIED
# Encoders that reject odd sizes for chroma-subsampled formats (the chroma plane would need
# half a column); FFV1 stores them fine.
_EVEN_SIZE_ENCODERS = frozenset({"libx264", "libx265"})
# Output formats tried, in order, when the source's own cannot be used.
_FALLBACK_FORMATS = {
    (False, False): ("yuv420p", "yuv444p"),  # (deep, odd size)
    (False, True): ("yuv444p",),
    (True, False): ("yuv420p10le", "yuv444p10le", "yuv420p16le", "yuv444p16le"),
    (True, True): ("yuv444p10le", "yuv444p16le"),
}


def output_kind(dst: str | Path) -> str:
    """"video", "folder" or "image", from the path: an existing folder or a name without
    extension is a frame folder; an image extension one image; a video extension a video."""
    dst = Path(dst)
    suffix = dst.suffix.lower()
    if dst.is_dir() or not suffix:
        return "folder"
    if suffix in IMAGE_EXTENSIONS:
        return "image"
    if suffix in VIDEO_CONTAINERS:
        return "video"
    known = ", ".join(sorted(VIDEO_CONTAINERS) + sorted(IMAGE_EXTENSIONS))
    raise OutputError(f"{dst}: unknown output extension {dst.suffix!r} (use one of {known}, "
                      "or a folder name)")


def _same_path(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return a.resolve() == b.resolve()


def _is_frame_folder(folder: Path) -> bool:
    """True when every entry looks like our own output (so replacing it loses nothing else)."""
    return all(_FRAME_NAME_RE.match(entry.name) for entry in folder.iterdir())


def check_output(dst: str | Path, *, src: str | Path | None, info: ClipInfo | None,
                 overwrite: bool, codec: str = "h264",
                 drop_unsupported_streams: bool = False) -> list[str]:
    """Refuse, before any processing, an output that cannot be written; return warnings.

    Raises ``OutputError`` when: the codec is unknown; ``dst`` is the input; ``dst`` exists and
    ``overwrite`` is False (or it is a folder holding other files); its folder is missing or
    not writable; the container cannot hold the video codec; or it cannot hold one of the
    input's audio/subtitle streams (unless ``drop_unsupported_streams``: then each dropped
    stream is one warning line). Streams a frame folder or image cannot hold are warnings.
    """
    warnings, _ = _check(Path(dst), src, info, overwrite, codec, drop_unsupported_streams)
    return warnings


def _check(dst: Path, src, info: ClipInfo | None, overwrite: bool, codec: str,
           drop_unsupported_streams: bool) -> tuple[list[str], StreamPlan | None]:
    """``check_output``, also returning the stream-copy plan for a video output."""
    if codec not in CODECS:
        raise OutputError(f"{dst}: unknown codec {codec!r} (use one of {', '.join(CODECS)})")
    kind = output_kind(dst)
    if codec == FRAME_FOLDER_CODEC and kind == "video":
        raise OutputError(f"{dst}: codec png writes a frame folder; give a folder path")
    if src is not None and _same_path(dst, Path(src)):
        raise OutputError(f"{dst}: output is the input itself; choose another output path")
    if dst.exists() or dst.is_symlink():
        if not overwrite:
            raise OutputError(f"{dst}: already exists (pass --overwrite to replace it)")
        if dst.is_dir() and kind != "folder":
            raise OutputError(f"{dst}: is a folder; cannot replace it with a file")
        if kind == "folder" and not dst.is_dir():
            raise OutputError(f"{dst}: is a file; a frame folder cannot replace it")
        if kind == "folder" and dst.is_dir() and not _is_frame_folder(dst):
            raise OutputError(f"{dst}: folder holds files other than numbered PNG frames; "
                              "refusing to replace it")
    check_parent_writable(dst)

    warnings: list[str] = []
    plan = None
    source_is_video = info is not None and info.kind == KIND_VIDEO and src is not None
    if kind == "video":
        container = VIDEO_CONTAINERS[dst.suffix.lower()]
        _check_video_codec(dst, container, VIDEO_ENCODERS[codec])
        if source_is_video:
            plan = plan_stream_copy(src, dst, container,
                                    drop_unsupported_streams=drop_unsupported_streams)
            warnings += plan.warnings
    else:
        if kind == "image" and info is not None and (info.frame_count or 1) > 1:
            raise OutputError(f"{dst}: an image holds one frame and the input has "
                              f"{info.frame_count}; give a folder or a video path")
        if source_is_video:
            for kind_name, count in (("audio", info.audio_streams),
                                     ("subtitle", info.subtitle_streams)):
                if count:
                    warnings.append(f"not written: {count} {kind_name} stream(s); "
                                    "a frame folder or image holds none")
    return warnings, plan


def _check_video_codec(dst: Path, container: str, encoder: str) -> None:
    """The encoder exists in this FFmpeg build and the container can store its output."""
    try:
        av.Codec(encoder, "w")
    except Exception:  # UnknownCodecError and kin: a PyAV/FFmpeg build without it
        raise OutputError(f"{dst}: encoder {encoder} is not available in this PyAV build; "
                          "choose another --codec") from None
    probe = av.open(io.BytesIO(), "w", format=container)
    try:
        probe.add_stream(encoder)
    except ValueError:
        raise OutputError(f"{dst}: the {dst.suffix} container cannot hold {encoder} video; "
                          "use .mkv") from None
    finally:
        probe.close()


# ---------------------------------------------------------------------------------------------
# Pure helpers: pixel format choice, RGB -> YUV frame, luma copy.


def _subsampled(pix_fmt: str) -> bool:
    chroma = av.VideoFormat(pix_fmt, 4, 4).components[1:]
    return any(c.width != 4 or c.height != 4 for c in chroma)


def _is_yuv(pix_fmt: str) -> bool:
    fmt = av.VideoFormat(pix_fmt)
    comps = fmt.components
    return (not fmt.is_rgb and len(comps) >= 3 and comps[0].is_luma
            and not fmt.name.startswith(("gray", "ya")))


def choose_pix_fmt(encoder: str, source_fmt: str | None, deep: bool, width: int,
                   height: int) -> str:
    """The output pixel format: the source's own when the encoder takes it (so luma can be
    copied), else a YUV format of the right depth the encoder supports at this size."""
    supported = {f.name for f in av.Codec(encoder, "w").video_formats}
    odd = bool(width % 2 or height % 2) and encoder in _EVEN_SIZE_ENCODERS

    def usable(name: str) -> bool:
        return (name in supported and _is_yuv(name) and (bit_depth_of(name) > 8) == deep
                and not (odd and _subsampled(name)))

    if source_fmt and usable(source_fmt):
        return source_fmt
    for name in _FALLBACK_FORMATS[(deep, odd)]:
        if usable(name):
            return name
    raise OutputError(f"{encoder} has no {'>8' if deep else '8'}-bit YUV format for a "
                      f"{width}x{height} picture")


def rgb_to_video_frame(rgb: np.ndarray, pix_fmt: str, colorspace: int | None = None,
                       color_range: int | None = None) -> av.VideoFrame:
    """HxWx3 uint8/uint16 RGB -> a frame in ``pix_fmt`` with the given colour matrix and range
    (FFmpeg enum values; None/unspecified gives swscale's default, BT.601 limited, which is
    also what the reader assumes for untagged sources, so a round trip is consistent)."""
    fmt = "rgb48le" if rgb.dtype == np.uint16 else "rgb24"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format=fmt)
    if colorspace not in (None, UNSPECIFIED_COLOR):
        frame.colorspace = colorspace  # the reformat below converts with this matrix
    dst_range = color_range if color_range not in (None, UNSPECIFIED_RANGE) else None
    out = frame.reformat(format=pix_fmt, dst_color_range=dst_range)
    if colorspace not in (None, UNSPECIFIED_COLOR):
        out.colorspace = colorspace
    if dst_range is not None:
        out.color_range = dst_range
    return out


def plane_array(plane, bytes_per_sample: int) -> np.ndarray:
    """(height, width * bytes_per_sample) uint8 view of a plane, row padding removed."""
    raw = np.frombuffer(plane, dtype=np.uint8)
    rows = raw[: plane.height * plane.line_size].reshape(plane.height, plane.line_size)
    return rows[:, : plane.width * bytes_per_sample]


def copy_luma(target: av.VideoFrame, source: av.VideoFrame) -> None:
    """Overwrite ``target``'s Y plane with ``source``'s, byte for byte (same format and size)."""
    if target.format.name != source.format.name or (target.width, target.height) != (
            source.width, source.height):
        raise ValueError(
            f"luma copy needs the same format and size, got {target.format.name} "
            f"{target.width}x{target.height} and {source.format.name} "
            f"{source.width}x{source.height}"
        )
    bytes_per_sample = 2 if bit_depth_of(source.format.name) > 8 else 1
    plane_array(target.planes[0], bytes_per_sample)[...] = plane_array(
        source.planes[0], bytes_per_sample)


def rotate_to_stored(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Upright picture -> the orientation the source stores (inverse of the reader's turn)."""
    turns = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, -turns)) if turns else rgb


def _check_rgb(rgb: np.ndarray, dst: Path) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"{dst}: expected an HxWx3 RGB array, got "
                         f"{getattr(rgb, 'shape', type(rgb).__name__)}")
    if rgb.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{dst}: expected uint8 or uint16 RGB, got {rgb.dtype}")


# ---------------------------------------------------------------------------------------------
# Writers


class Writer:
    """Context manager: ``write(rgb, frame)`` per frame; a clean exit commits (rename into
    place), an exception aborts (temporary output removed) and propagates. ``warnings`` lists
    what the output could not keep (dropped streams, retimed frames...)."""

    def __init__(self, dst: Path, info: ClipInfo | None, warnings: list[str]):
        self.dst = dst
        self.info = info
        self.warnings = list(warnings)
        self.frames_written = 0
        self._done = False

    def __enter__(self) -> "Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def write(self, rgb: np.ndarray, frame: Frame | None = None) -> None:
        """Add one upright picture (HxWx3 uint8/uint16); ``frame`` is the source Frame."""
        if self._done:
            raise ProcessingError(f"{self.dst}: write after the output was closed")
        _check_rgb(rgb, self.dst)
        try:
            self._write(rgb, frame)
        except BaseException as exc:
            self.abort()
            self._reraise(exc)
        self.frames_written += 1

    def close(self) -> None:
        """Finish and move the result into place (idempotent)."""
        if self._done:
            return
        try:
            if self.frames_written == 0:
                raise ProcessingError(f"{self.dst}: no frames were written")
            self._commit()
        except BaseException as exc:
            self.abort()
            self._reraise(exc)
        self._done = True

    def abort(self) -> None:
        """Drop the partial output (idempotent; never raises)."""
        if self._done:
            return
        self._done = True
        try:
            self._discard()
        except Exception:  # cleanup must not hide the original failure
            pass

    def _reraise(self, exc: BaseException):
        """I/O and encoder failures (disk full...) become a one-line ProcessingError; anything
        else (Ctrl-C, our own VidcolorErrors, bugs) propagates unchanged."""
        if isinstance(exc, (OSError, av.FFmpegError)):
            raise ProcessingError(f"{self.dst}: writing failed ({one_line_cause(exc)})") from exc
        raise exc

    # subclass hooks
    def _write(self, rgb: np.ndarray, frame: Frame | None) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError


class ImageWriter(Writer):
    """One still image (PNG/TIFF keep 16 bits; JPEG/BMP are 8-bit)."""

    def __init__(self, dst: Path, info: ClipInfo | None, warnings: list[str], overwrite: bool):
        super().__init__(dst, info, warnings)
        self._overwrite = overwrite
        self._tmp = temp_beside(dst, dst.suffix)

    def _write(self, rgb, frame) -> None:
        if self.frames_written:
            raise OutputError(f"{self.dst}: an image output holds one frame; got a second one "
                              "(give a folder or video path)")
        write_image_file(self._tmp, np.ascontiguousarray(rgb), self.dst.suffix)

    def _commit(self) -> None:
        if not self._overwrite and self.dst.exists():
            raise OutputError(f"{self.dst}: appeared while writing; not replaced")
        os.replace(self._tmp, self.dst)

    def _discard(self) -> None:
        self._tmp.unlink(missing_ok=True)


class FolderWriter(Writer):
    """PNG frames 00000.png, 00001.png... (16-bit PNG for 16-bit pictures), written into a
    hidden folder that replaces the target at the end."""

    def __init__(self, dst: Path, info: ClipInfo | None, warnings: list[str], overwrite: bool):
        super().__init__(dst, info, warnings)
        self._overwrite = overwrite
        self._tmp = temp_beside(dst)
        if self._tmp.exists():
            shutil.rmtree(self._tmp)
        self._tmp.mkdir()

    def _write(self, rgb, frame) -> None:
        name = FRAME_NAME.format(self.frames_written)
        write_image_file(self._tmp / name, np.ascontiguousarray(rgb), ".png")

    def _commit(self) -> None:
        old = None
        if self.dst.exists():
            if not self._overwrite:
                raise OutputError(f"{self.dst}: appeared while writing; not replaced")
            old = temp_beside(self.dst, ".old")
            os.replace(self.dst, old)
        try:
            os.replace(self._tmp, self.dst)
        except BaseException:
            if old is not None:
                os.replace(old, self.dst)  # put the previous result back
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _discard(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)


class VideoWriter(Writer):
    """Encodes frames (libx264/libx265/FFV1) and copies the source's other streams."""

    def __init__(self, dst: Path, info: ClipInfo | None, warnings: list[str], *,
                 src_path: Path | None, codec: str, crf: int, keep_luma: bool,
                 overwrite: bool, plan: StreamPlan | None, trimmed: bool,
                 fps: Fraction | None):
        super().__init__(dst, info, warnings)
        self._src_path = src_path
        self._encoder = VIDEO_ENCODERS[codec]
        self._crf = crf
        self._keep_luma = keep_luma
        self._overwrite = overwrite
        self._plan = plan
        self._trimmed = trimmed
        self._container_format = VIDEO_CONTAINERS[dst.suffix.lower()]
        self._fps = Fraction(fps) if fps else None
        self._tmp = temp_beside(dst, dst.suffix)
        self._out = None
        self._stream = None
        self._copier: PacketCopier | None = None
        self._rotation = info.rotation if info is not None else 0
        self._deep = False
        self._copy_luma = False
        self._tags: dict[str, int] = {}
        self._time_base: Fraction | None = None
        self._shift_pts = 0
        self._last_pts: int | None = None
        self._end_time: Fraction | None = None
        self._retimed = 0
        self.pix_fmt: str | None = None  # the encoded format, known after the first frame
        self.luma_copied = 0  # frames whose Y plane is the source's own

    # -- set-up on the first frame (its size and its source decide the format)
    def _setup(self, rgb: np.ndarray, frame: Frame | None) -> None:
        source = frame.source if frame is not None else None
        if source is not None and not isinstance(source, av.VideoFrame):
            source = None
        height, width = rotate_to_stored(rgb, self._rotation).shape[:2]
        self._choose_format(rgb, source, width, height)
        fps = self._choose_timing(frame)
        self._stream = self._open_stream(width, height, fps, source)
        self._copier = self._start_copier(frame)

    def _choose_format(self, rgb: np.ndarray, source: av.VideoFrame | None, width: int,
                       height: int) -> None:
        """Bit depth and pixel format of the output, and whether the luma plane is copied."""
        info = self.info
        source_fmt = source.format.name if source is not None else (info.pix_fmt if info else None)
        if info is not None and info.kind == KIND_VIDEO:
            self._deep = info.bit_depth > 8  # the source's depth wins: 10-bit in, 10-bit out
        else:
            self._deep = rgb.dtype == np.uint16
        self.pix_fmt = choose_pix_fmt(self._encoder, source_fmt, self._deep, width, height)
        self._copy_luma = (
            self._keep_luma and source is not None and source.format.name == self.pix_fmt
            and (source.width, source.height) == (width, height)
        )

    def _choose_timing(self, frame: Frame | None) -> Fraction:
        """The stream's time base (the source's own when there is one) and, for a trimmed
        range, the shift that makes the output start at 0. Returns the frame rate."""
        info = self.info
        fps = 1 / self._frame_interval()
        if frame is not None and frame.time_base is not None and frame.pts is not None:
            self._time_base = Fraction(frame.time_base)
        elif info is not None and info.time_base is not None:
            self._time_base = info.time_base
        else:
            self._time_base = 1 / fps
        if self._trimmed and frame is not None and frame.pts is not None:
            self._shift_pts = round(frame.pts * Fraction(frame.time_base) / self._time_base)
        return fps

    def _open_stream(self, width: int, height: int, fps: Fraction,
                     source: av.VideoFrame | None):
        """The temporary container and its video stream: encoder options, colour tags, sample
        aspect ratio and rotation."""
        info = self.info
        options = CONTAINER_OPTIONS.get(self._container_format, {})
        self._out = av.open(str(self._tmp), "w", format=self._container_format,
                            container_options=options)
        stream = self._out.add_stream(self._encoder, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, self.pix_fmt
        stream.time_base = self._time_base
        stream.codec_context.time_base = self._time_base
        stream.thread_type = "AUTO"
        if self._encoder in ("libx264", "libx265"):
            stream.options = {"crf": str(self._crf), "preset": X26X_PRESET}
            if self._encoder == "libx265":
                stream.options["x265-params"] = "log-level=error"
                if self._container_format in ("mp4", "mov"):
                    stream.codec_tag = "hvc1"  # the tag Apple players require for HEVC
        elif self._encoder == "ffv1":
            stream.options = {"level": "3", "slicecrc": "1"}  # v3: multithreaded, checksummed
        self._tags = self._color_tags(source)
        for name, value in self._tags.items():
            setattr(stream.codec_context, name, value)
        if info is not None and info.sample_aspect_ratio:
            stream.codec_context.sample_aspect_ratio = info.sample_aspect_ratio
        if self._rotation:
            stream.set_display_rotation(self._rotation)
        return stream

    def _start_copier(self, frame: Frame | None) -> PacketCopier | None:
        """The packet copier of the source's other streams (the written span only, when
        trimmed), or None when nothing is copied."""
        if self._plan is None or self._src_path is None or not (
                self._plan.copied or self._plan.attachments):
            return None
        shift = self._shift_pts * self._time_base
        window_start = shift if self._trimmed and frame is not None and frame.pts is not None \
            else None
        return PacketCopier(self._src_path, self._out, self._plan,
                            window=(window_start, None), shift=shift)

    def _color_tags(self, source) -> dict[str, int]:
        """The source's colour tags (left unset where the source leaves them unspecified).
        Stills and RGB-coded video have no YUV matrix to keep: they get BT.709 limited range,
        which is also what their RGB is converted with."""
        info = self.info
        source_fmt = source.format.name if source is not None else (info and info.pix_fmt)
        if info is None or info.kind != KIND_VIDEO or (
                source_fmt and av.VideoFormat(source_fmt).is_rgb):
            return dict(STILLS_COLOR_TAGS)
        values = {
            "colorspace": source.colorspace if source is not None else info.colorspace,
            "color_primaries": (source.color_primaries if source is not None
                                else info.color_primaries),
            "color_trc": source.color_trc if source is not None else info.color_trc,
            "color_range": source.color_range if source is not None else info.color_range,
        }
        unspecified = {"color_range": UNSPECIFIED_RANGE}
        return {k: int(v) for k, v in values.items()
                if v is not None and int(v) != unspecified.get(k, UNSPECIFIED_COLOR)}

    # -- per frame
    def _frame_interval(self) -> Fraction:
        """1 / the source's frame rate (the ``fps`` argument, then ``STILLS_FPS``, for stills)."""
        fps = (self.info.fps if self.info is not None else None) or self._fps or STILLS_FPS
        return 1 / fps

    def _next_pts(self, frame: Frame | None) -> tuple[int, Fraction]:
        """Output pts (stream time base) and source time in seconds, strictly increasing."""
        if frame is not None and frame.pts is not None and frame.time_base is not None:
            source_time = frame.pts * Fraction(frame.time_base)
            pts = round(source_time / self._time_base) - self._shift_pts
        else:  # stills: evenly spaced at the output frame rate
            pts = self.frames_written * max(1, round(self._frame_interval() / self._time_base))
            source_time = pts * self._time_base
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1  # muxers need strictly increasing timestamps
            self._retimed += 1
        self._last_pts = pts
        return pts, source_time

    def _write(self, rgb, frame) -> None:
        if self._stream is None:
            self._setup(rgb, frame)
        stored = rotate_to_stored(convert_depth(rgb, np.uint16 if self._deep else np.uint8),
                                  self._rotation)
        if stored.shape[:2] != (self._stream.height, self._stream.width):
            raise ValueError(f"{self.dst}: frame {self.frames_written} is "
                             f"{stored.shape[1]}x{stored.shape[0]} (stored orientation), the "
                             f"video is {self._stream.width}x{self._stream.height}")
        video_frame = rgb_to_video_frame(stored, self.pix_fmt, self._tags.get("colorspace"),
                                         self._tags.get("color_range"))
        if self._copy_luma and frame is not None and isinstance(frame.source, av.VideoFrame):
            copy_luma(video_frame, frame.source)
            self.luma_copied += 1
        pts, source_time = self._next_pts(frame)
        video_frame.pts = pts
        video_frame.time_base = self._time_base
        step = self._frame_interval()
        source = frame.source if frame is not None else None
        if isinstance(source, av.VideoFrame) and source.duration and frame.time_base:
            step = source.duration * Fraction(frame.time_base)  # VFR: this frame's own length
        end = source_time + step
        self._end_time = end if self._end_time is None else max(self._end_time, end)
        # the last frame's duration sets the stream's length (and MP4's average frame rate)
        video_frame.duration = max(1, round(step / self._time_base))
        self._out.mux(self._stream.encode(video_frame))
        if self._copier is not None:
            self._copier.copy_until(source_time)

    def _commit(self) -> None:
        self._out.mux(self._stream.encode(None))
        if self._copier is not None:
            if self._trimmed:
                self._copier.set_window_end(self._end_time)
            self._copier.copy_until(None)
            self._copier.close()
        self._out.close()
        if self._retimed:
            self.warnings.append(f"{self._retimed} frame(s) had a repeated or decreasing "
                                 "timestamp and were moved one tick later")
        if not self._overwrite and self.dst.exists():
            raise OutputError(f"{self.dst}: appeared while writing; not replaced")
        os.replace(self._tmp, self.dst)

    def _discard(self) -> None:
        # Called while another failure propagates: closing half-written containers may fail
        # too, and must neither hide that failure nor keep the temporary file from going.
        for closable in (self._copier, self._out):
            if closable is not None:
                with contextlib.suppress(Exception):
                    closable.close()
        self._tmp.unlink(missing_ok=True)


def open_writer(dst: str | Path, info: ClipInfo | None, *, src_path: str | Path | None,
                codec: str = "h264", crf: int = DEFAULT_CRF, overwrite: bool = False,
                keep_luma: bool = True, drop_unsupported_streams: bool = False,
                trimmed: bool = False, fps: Fraction | None = None) -> Writer:
    """A writer for ``dst`` (video, PNG frame folder or image, from ``output_kind``).

    ``check_output`` runs first, so every refusal happens before any processing. ``trimmed``:
    the frames are part of the source (start/duration/max_frames): copied streams keep only
    the written span and all timestamps shift so the output starts at 0. ``fps`` is the
    output frame rate when the input has none (default ``STILLS_FPS``).
    """
    dst = Path(dst)
    warnings, plan = _check(dst, src_path, info, overwrite, codec, drop_unsupported_streams)
    remove_stale_partials(dst)  # a killed earlier run's temporary for this target
    kind = output_kind(dst)
    if kind == "image":
        return ImageWriter(dst, info, warnings, overwrite)
    if kind == "folder":
        return FolderWriter(dst, info, warnings, overwrite)
    return VideoWriter(dst, info, warnings, src_path=Path(src_path) if src_path else None,
                       codec=codec, crf=crf, keep_luma=keep_luma, overwrite=overwrite,
                       plan=plan, trimmed=trimmed, fps=fps)
