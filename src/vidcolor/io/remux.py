"""Copy a source's audio, subtitle and attachment streams into a new file, packet for packet.

Nothing is re-encoded: each packet's payload is muxed unchanged, only its timestamps are
rescaled to the output stream's time base. Packets are pulled in step with the video being
written (``copy_until``), so the output is interleaved as a player expects rather than all
video first and all audio at the end.

What a container cannot hold is decided here too (``plan_stream_copy``), before any work: the
caller either stops with a one-line message or, when asked to, drops those streams and reports
each one. Nothing is dropped silently.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av

from vidcolor.errors import OutputError

COPIED_TYPES = ("audio", "subtitle")
# Formats whose muxer stores attachments (fonts for ASS subtitles, cover images).
ATTACHMENT_FORMATS = frozenset({"matroska"})
# Stream tags the muxer writes itself (Matroska's per-stream DURATION); copying would go stale.
MUXER_COMPUTED_TAGS = frozenset({"DURATION"})
# Streams of one file are interleaved within FFmpeg's default max_interleave_delta (10 s), so
# once packets run this far past the end of a window, none of any stream can fall inside it.
INTERLEAVE_SLACK = Fraction(10)


@dataclass
class StreamPlan:
    """Which source streams go into the output (by source index), and what is left out."""

    copied: list[int] = field(default_factory=list)
    attachments: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _describe(stream) -> str:
    """"subtitle stream #2 (subrip)": what a user needs to find the stream in a player."""
    name = stream.codec_context.name if stream.codec_context is not None else None
    name = name or getattr(stream, "name", None) or "unknown codec"  # attachments: file name
    return f"{stream.type} stream #{stream.index} ({name})"


def _can_hold(format_name: str, stream) -> bool:
    """Ask the muxer itself (avformat_query_codec via PyAV) whether it can store this stream."""
    probe = av.open(io.BytesIO(), "w", format=format_name)
    try:
        probe.add_stream_from_template(stream)
        return True
    except ValueError:
        return False
    finally:
        probe.close()


def plan_stream_copy(src_path: str | Path, dst: str | Path, format_name: str, *,
                     drop_unsupported_streams: bool = False) -> StreamPlan:
    """Decide which audio/subtitle/attachment streams of ``src_path`` a ``format_name`` file
    can carry. Raises ``OutputError`` naming the first stream it cannot hold unless
    ``drop_unsupported_streams``, in which case each dropped stream yields a warning line."""
    plan = StreamPlan()
    with av.open(str(src_path), metadata_errors="replace") as source:
        for stream in source.streams:
            if stream.type in COPIED_TYPES:
                if _can_hold(format_name, stream):
                    plan.copied.append(stream.index)
                    continue
                what = _describe(stream)
                if not drop_unsupported_streams:
                    raise OutputError(
                        f"{dst}: the {Path(dst).suffix or format_name} container cannot hold "
                        f"{what} of {Path(src_path).name}; write to .mkv or pass "
                        "--drop-unsupported-streams"
                    )
                plan.warnings.append(f"dropped {what}: {format_name} cannot hold it")
            elif stream.type == "attachment":
                if format_name in ATTACHMENT_FORMATS:
                    plan.attachments.append(stream.index)
                else:
                    plan.warnings.append(
                        f"dropped {_describe(stream)}: only Matroska (.mkv) stores attachments"
                    )
            elif stream.type == "data":
                plan.warnings.append(f"not copied: {_describe(stream)} (data streams are "
                                     "not copied)")
    return plan


def _packet_time(packet) -> Fraction | None:
    ts = packet.dts if packet.dts is not None else packet.pts
    if ts is None or packet.time_base is None:
        return None
    return ts * Fraction(packet.time_base)


class PacketCopier:
    """Streams the planned packets of ``src_path`` into ``output`` in time order.

    ``window``: copy only packets with ``start <= time < end`` (seconds of source time; either
    side None = open), for outputs that hold part of the source. ``shift``: seconds subtracted
    from every copied timestamp (the same shift the video got), so sync is kept.
    """

    def __init__(self, src_path: str | Path, output, plan: StreamPlan, *,
                 window: tuple[Fraction | None, Fraction | None] = (None, None),
                 shift: Fraction = Fraction(0)):
        self._source = av.open(str(src_path), metadata_errors="replace")
        self._output = output
        self._window_start, self._window_end = window
        self._shift = shift
        self._out_streams: dict[int, object] = {}
        self._pending = None
        self._packets: Iterator | None = None
        self.copied_packets = 0
        try:
            self._add_streams(plan)
        except BaseException:
            self._source.close()
            raise

    def _add_streams(self, plan: StreamPlan) -> None:
        """Output streams cloned from the source's (codec parameters, time base, tags)."""
        for index in plan.attachments:
            self._output.add_stream_from_template(self._source.streams[index])
        for index in plan.copied:
            template = self._source.streams[index]
            out_stream = self._output.add_stream_from_template(template)
            # language, title, handler...; not the muxer-computed duration, which may change
            out_stream.metadata.update({k: v for k, v in template.metadata.items()
                                        if k.upper() not in MUXER_COMPUTED_TAGS})
            out_stream.disposition = template.disposition
            self._out_streams[index] = out_stream

    def _start(self) -> None:
        if self._packets is not None:
            return
        if not self._out_streams:
            self._packets = iter(())
            return
        if self._window_start is not None and self._window_start > 0:
            try:  # skip the part of the file before the window
                self._source.seek(int(self._window_start * av.time_base), backward=True)
            except av.FFmpegError:
                self._source.seek(0)
        streams = [self._source.streams[i] for i in self._out_streams]
        self._packets = self._source.demux(*streams)

    def _next(self):
        """The next packet worth copying (non-empty, inside the window), or None at the end."""
        for packet in self._packets:
            if not packet.size:  # demux() ends each stream with an empty flush packet
                continue
            t = _packet_time(packet)
            if t is not None and self._window_start is not None and t < self._window_start:
                continue
            if t is not None and self._window_end is not None and t >= self._window_end:
                if t >= self._window_end + INTERLEAVE_SLACK:
                    self._packets = iter(())  # nothing later can be inside: stop reading
                    return None
                continue  # other streams may still have packets inside the window
            return packet
        return None

    def _mux(self, packet) -> None:
        out_stream = self._out_streams[packet.stream.index]
        if self._shift:
            offset = round(self._shift / Fraction(packet.time_base))
            if packet.pts is not None:
                packet.pts -= offset
            if packet.dts is not None:
                packet.dts -= offset
        packet.stream = out_stream
        self._output.mux(packet)
        self.copied_packets += 1

    def set_window_end(self, seconds: Fraction | None) -> None:
        """Known only once the last frame is written: copy nothing at or after it."""
        self._window_end = seconds

    def copy_until(self, seconds: Fraction | None) -> None:
        """Mux every pending packet whose time is at or before ``seconds`` (source time);
        None copies everything that is left."""
        self._start()
        while True:
            if self._pending is None:
                self._pending = self._next()
                if self._pending is None:
                    return
            t = _packet_time(self._pending)
            if seconds is not None and t is not None and t > seconds:
                return
            packet, self._pending = self._pending, None
            if t is not None and self._window_end is not None and t >= self._window_end:
                continue  # fetched before the window's end was known
            self._mux(packet)

    def close(self) -> None:
        self._source.close()
