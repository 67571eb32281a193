"""Reading clips: timestamps, rotation, bit depth, odd sizes, folders, damaged files, errors."""

from __future__ import annotations

import inspect
from fractions import Fraction

import av
import numpy as np
import pytest

from clips import make_audio_only, make_clip, make_image_folder, pattern_frame
from vidcolor.errors import InputError, OptionError
from vidcolor.io.frame import Frame
from vidcolor.io.reader import (
    YUV_TO_RGB_FLAGS, ClipInfo, normalise_rotation, open_clip, probe,
)


def _decoded_times(path):
    """Presentation times of every video frame, decoded independently with PyAV."""
    with av.open(str(path)) as container:
        return sorted(f.pts * f.time_base for f in container.decode(video=0))


def test_video_info_and_frames(tmp_path):
    made = make_clip(tmp_path / "a.mp4", n_frames=8, size=(64, 48), fps=25, audio=True)
    with open_clip(made.path) as clip:
        info = clip.info
        assert isinstance(info, ClipInfo) and info.kind == "video"
        assert (info.width, info.height) == (64, 48)
        assert info.frame_count == 8 and info.frame_count_exact
        assert info.fps == 25 and info.pix_fmt == "yuv420p" and info.bit_depth == 8
        assert info.codec == "h264" and info.rotation == 0
        assert info.audio_streams == 1 and info.subtitle_streams == 0
        assert info.duration == pytest.approx(8 / 25)
        iterator = clip.frames()
        assert inspect.isgenerator(iterator)  # streaming, nothing decoded up front
        frames = list(iterator)
    assert clip.decode_errors == 0 and not clip.truncated
    assert [f.index for f in frames] == list(range(8))
    assert all(isinstance(f, Frame) and isinstance(f.source, av.VideoFrame) for f in frames)
    assert [f.pts * f.time_base for f in frames] == _decoded_times(made.path)
    assert [f.pts * f.time_base for f in frames] == made.times
    for i, frame in enumerate(frames):
        assert frame.rgb.dtype == np.uint8 and frame.rgb.shape == (48, 64, 3)
        errors = [np.abs(frame.rgb.astype(int) - truth).mean() for truth in made.rgb]
        assert errors[i] < 5 and int(np.argmin(errors)) == i  # lossy, but its own picture


def test_variable_frame_rate_timestamps_are_exact(tmp_path):
    pts = [0, 40, 80, 200, 210, 400, 1001]
    made = make_clip(tmp_path / "vfr.mkv", n_frames=7, pts=pts, time_base=Fraction(1, 1000))
    with open_clip(made.path) as clip:
        frames = list(clip.frames())
        assert clip.info.time_base == Fraction(1, 1000)
    assert [f.pts for f in frames] == pts
    assert all(f.time_base == Fraction(1, 1000) for f in frames)


def _ffmpeg_autorotate(frame: av.VideoFrame) -> np.ndarray:
    """Upright RGB the way the ffmpeg command line turns a frame (its autorotate filters)."""
    theta = (-frame.rotation) % 360
    chain = {0: [], 90: [("transpose", "clock")], 180: [("hflip", None), ("vflip", None)],
             270: [("transpose", "cclock")]}[theta]
    graph = av.filter.Graph()
    node = source = graph.add_buffer(width=frame.width, height=frame.height,
                                     format=frame.format.name, time_base=frame.time_base)
    for name, arg in chain:
        nxt = graph.add(name, arg) if arg else graph.add(name)
        node.link_to(nxt)
        node = nxt
    sink = graph.add("buffersink")
    node.link_to(sink)
    graph.configure()
    source.push(frame)
    return sink.pull().to_ndarray(format="rgb24", interpolation=YUV_TO_RGB_FLAGS)


@pytest.mark.parametrize("rotation", [90, 180, -90])
def test_rotation_is_applied(tmp_path, rotation):
    plain = make_clip(tmp_path / "plain.mkv", n_frames=3, size=(32, 16), codec="ffv1")
    rotated = make_clip(tmp_path / "rot.mkv", n_frames=3, size=(32, 16), codec="ffv1",
                        rotation=rotation)
    with open_clip(plain.path) as a, open_clip(rotated.path) as b:
        assert b.info.rotation == normalise_rotation(rotation)
        quarter = rotation % 180 != 0
        assert (b.info.width, b.info.height) == ((16, 32) if quarter else (32, 16))
        assert b.info.stored_size == (32, 16)
        for upright, stored in zip(b.frames(), a.frames()):
            # ffmpeg turns the YUV planes before converting, so chroma interpolation differs
            # by a few hundredths of a level; a wrong turn differs by over 100 levels
            reference = _ffmpeg_autorotate(upright.source)
            error = np.abs(upright.rgb.astype(int) - reference).mean()
            assert error < 0.5
            # and exactly the unrotated clip's picture, turned counter-clockwise
            np.testing.assert_array_equal(upright.rgb, np.rot90(stored.rgb, rotation // 90))
            assert upright.rgb.flags["C_CONTIGUOUS"]


def test_ten_bit_source_gives_16_bit_rgb(tmp_path):
    made = make_clip(tmp_path / "deep.mkv", n_frames=3, pix_fmt="yuv420p10le", codec="ffv1")
    with open_clip(made.path) as clip:
        assert clip.info.bit_depth == 10 and clip.info.pix_fmt == "yuv420p10le"
        frames = list(clip.frames())
    assert frames[0].rgb.dtype == np.uint16
    truth = made.rgb[0].astype(float)
    assert np.abs(frames[0].rgb - truth).mean() < 3 * 257  # same picture, on the 16-bit scale
    assert frames[0].rgb.max() > 255  # really 16-bit scale, not 8-bit values in uint16


def test_odd_size(tmp_path):
    made = make_clip(tmp_path / "odd.mkv", n_frames=4, size=(63, 47), pix_fmt="yuv444p")
    with open_clip(made.path) as clip:
        assert (clip.info.width, clip.info.height) == (63, 47)
        frames = list(clip.frames())
    assert len(frames) == 4 and frames[0].rgb.shape == (47, 63, 3)


def test_start_duration_and_max_frames(tmp_path):
    made = make_clip(tmp_path / "w.mkv", n_frames=12, fps=25)  # frames every 40 ms
    with open_clip(made.path) as clip:
        def times(**window):
            return [f.pts * f.time_base for f in clip.frames(**window)]

        assert times(start=0.2) == made.times[5:]
        assert times(start=0.2, duration=0.12) == made.times[5:8]
        # kept: start - h <= t < start + duration - h, h = half a frame interval (20 ms)
        assert times(duration=0.1) == made.times[:2]  # 80 ms is not < 100 - 20
        assert times(duration=0.11) == made.times[:3]
        assert times(start=0.21, max_frames=2) == made.times[5:7]  # nearest frame at 0.2
        assert [f.index for f in clip.frames(start=0.2, max_frames=3)] == [0, 1, 2]
        assert times(start=5.0) == []
        with pytest.raises(OptionError, match="start"):
            list(clip.frames(start=-1))
        with pytest.raises(OptionError, match="duration"):
            list(clip.frames(duration=0))
        with pytest.raises(OptionError, match="max_frames"):
            list(clip.frames(max_frames=0))


def test_close_stops_an_unfinished_iteration(tmp_path):
    made = make_clip(tmp_path / "c.mkv", n_frames=6)
    clip = open_clip(made.path)
    iterator = clip.frames()
    next(iterator)
    clip.close()
    assert list(iterator) == []


def test_folder_clip_natural_order_8_and_16_bit(tmp_path):
    for depth in (8, 16):
        folder = tmp_path / f"d{depth}"
        names = ["img10.png", "img9.png", "img1.png"]
        written = make_image_folder(folder, names, size=(20, 14), bit_depth=depth)
        with open_clip(folder) as clip:
            info = clip.info
            assert info.kind == "folder" and info.frame_count == 3 and info.bit_depth == depth
            assert (info.width, info.height) == (20, 14) and info.fps is None
            frames = list(clip.frames())
        expected = [written[n] for n in ("img1.png", "img9.png", "img10.png")]
        for frame, truth in zip(frames, expected):
            assert frame.pts is None and frame.source is None
            np.testing.assert_array_equal(frame.rgb, truth)
        with open_clip(folder) as clip:
            assert len(list(clip.frames(max_frames=2))) == 2
            with pytest.raises(OptionError, match="max_frames"):
                clip.frames(start=1.0)


def test_folder_clip_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no images"):
        open_clip(empty)
    mixed = tmp_path / "mixed"
    make_image_folder(mixed, ["m1.png"], size=(20, 14))
    make_image_folder(mixed, ["m2.png"], size=(22, 14))
    with pytest.raises(InputError, match="differ in size"):
        open_clip(mixed)


def test_single_image_clip(tmp_path):
    from clips import write_png

    rgb = pattern_frame(0, 12, 8)
    write_png(tmp_path / "one.png", rgb)
    info = probe(tmp_path / "one.png")
    assert info.kind == "image" and info.frame_count == 1 and (info.width, info.height) == (12, 8)
    with open_clip(tmp_path / "one.png") as clip:
        (frame,) = list(clip.frames())
    np.testing.assert_array_equal(frame.rgb, rgb)


def test_unusable_inputs_raise_one_line_input_errors(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    empty = tmp_path / "empty.mkv"
    empty.write_bytes(b"")
    audio = make_audio_only(tmp_path / "sound.m4a")
    zero = tmp_path / "zero.mkv"
    with av.open(str(zero), "w") as out:  # a video stream with no frame at all
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height = 64, 48
        out.start_encoding()
    cases = {
        tmp_path / "missing.mp4": "no such file",
        text: "notes.mp4",
        empty: "empty",
        audio: "no video stream",
        zero: "zero.mkv",
    }
    for path, message in cases.items():
        with pytest.raises(InputError, match=message) as caught:
            open_clip(path)
        assert "\n" not in str(caught.value) and str(path.name) in str(caught.value)


def _garble_packet(path, index, out_path):
    """Overwrite the middle half of one video packet's payload inside the file."""
    with av.open(str(path)) as container:
        payloads = [bytes(p) for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    start = data.find(payloads[index])
    assert start > 0
    size = len(payloads[index])
    for i in range(start + size // 4, start + 3 * size // 4):
        data[i] = (data[i] * 7 + 13) % 256
    out_path.write_bytes(bytes(data))


def test_corrupt_frame_in_the_middle_is_skipped_and_counted(tmp_path):
    made = make_clip(tmp_path / "ok.mkv", n_frames=10, codec="ffv1")
    bad = tmp_path / "bad.mkv"
    _garble_packet(made.path, 5, bad)
    with open_clip(bad) as clip:
        frames = list(clip.frames())
    assert clip.decode_errors >= 1 and not clip.truncated
    times = [f.pts * f.time_base for f in frames]
    assert made.times[0] in times and made.times[-1] in times  # decoding went on past it
    assert len(frames) >= 9


def test_truncated_file_yields_what_decodes(tmp_path):
    made = make_clip(tmp_path / "full.mkv", n_frames=12, codec="ffv1")
    with open_clip(made.path) as clip:
        assert len(list(clip.frames())) == 12
    assert not clip.truncated
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(made.path.read_bytes()[: int(made.path.stat().st_size * 0.6)])
    with open_clip(cut) as clip:
        frames = list(clip.frames())
    assert clip.truncated
    assert 0 < len(frames) < 12
    assert [f.pts * f.time_base for f in frames] == made.times[: len(frames)]


# Luma weights (Kr, Kb) of the two matrices, from ITU-R BT.601 and BT.709.
_KR_KB = {6: (0.299, 0.114), 2: (0.299, 0.114), 1: (0.2126, 0.0722)}


def _rgb_from_planes(y, u, v, colorspace, full_range):
    """The textbook YCbCr -> R'G'B' formula, computed here in float64."""
    kr, kb = _KR_KB[colorspace]
    if full_range:
        luma, pb, pr = y / 255.0, (u - 128.0) / 255.0, (v - 128.0) / 255.0
    else:
        luma, pb, pr = (y - 16.0) / 219.0, (u - 128.0) / 224.0, (v - 128.0) / 224.0
    r = luma + 2 * (1 - kr) * pr
    b = luma + 2 * (1 - kb) * pb
    g = (luma - kr * r - kb * b) / (1 - kr - kb)
    return np.clip(np.stack([r, g, b], axis=-1) * 255.0, 0, 255)


@pytest.mark.parametrize("colorspace, color_range", [(2, 0), (1, 1), (1, 2), (6, 1)])
def test_rgb_follows_the_frame_matrix_and_range(tmp_path, colorspace, color_range):
    tags = {"colorspace": colorspace, "color_range": color_range}
    made = make_clip(tmp_path / "m.mkv", n_frames=2, pix_fmt="yuv444p", codec="ffv1",
                     color_tags=tags)
    with open_clip(made.path) as clip:
        for frame in clip.frames():
            planes = [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width]
                      for p in frame.source.planes]
            expected = _rgb_from_planes(*(p.astype(np.float64) for p in planes),
                                        colorspace, full_range=color_range == 2)
            assert np.abs(frame.rgb - expected).max() <= 1.0  # rounding only


def test_fast_rgb_is_close_but_coarser(tmp_path):
    made = make_clip(tmp_path / "f.mkv", n_frames=2, codec="ffv1", size=(96, 64))
    with open_clip(made.path) as accurate, open_clip(made.path, fast_rgb=True) as fast:
        for a, b in zip(accurate.frames(), fast.frames()):
            truth = made.rgb[a.index].astype(int)
            error_accurate = np.abs(a.rgb - truth).mean()
            error_fast = np.abs(b.rgb - truth).mean()
            assert error_accurate < error_fast < 4
