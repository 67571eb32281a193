"""Writing: pass-through keeps timing, streams, luma, depth, rotation, tags; atomic outputs."""

from __future__ import annotations

import errno
from fractions import Fraction

import av
import numpy as np
import pytest
from PIL import Image

from clips import decode_planes, make_clip, make_image_folder, read_packets
from vidcolor.errors import OutputError, ProcessingError
from vidcolor.io import writer as writer_module
from vidcolor.io.reader import open_clip
from vidcolor.io.writer import (
    check_output, choose_pix_fmt, copy_luma, open_writer, output_kind, rgb_to_video_frame,
)


def _pass_through(src, dst, transform=None, **options):
    """Decode ``src`` and write every frame back (``transform`` may alter the RGB)."""
    with open_clip(src) as clip:
        with open_writer(dst, clip.info, src_path=src, **options) as writer:
            for frame in clip.frames():
                rgb = frame.rgb if transform is None else transform(frame.rgb)
                writer.write(rgb, frame)
    return writer


def _times(path):
    with av.open(str(path)) as container:
        return [f.pts * f.time_base for f in container.decode(video=0)]


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_output_kind(tmp_path):
    assert output_kind(tmp_path / "a.mp4") == "video"
    assert output_kind(tmp_path / "a.MKV") == "video"
    assert output_kind(tmp_path / "frames") == "folder"
    assert output_kind(tmp_path) == "folder"
    assert output_kind(tmp_path / "x.png") == "image"
    with pytest.raises(OutputError, match="extension"):
        output_kind(tmp_path / "a.xyz")


def test_aac_mp4_pass_through_keeps_frames_timing_and_audio_bytes(tmp_path):
    made = make_clip(tmp_path / "in.mp4", n_frames=10, audio=True)
    out = tmp_path / "out.mp4"
    writer = _pass_through(made.path, out)  # default: H.264, CRF 18
    assert writer.warnings == []
    assert _times(out) == _times(made.path) == made.times
    source_audio, copied_audio = read_packets(made.path, "audio"), read_packets(out, "audio")
    assert len(copied_audio) == 1 and len(copied_audio[0]) > 10
    assert copied_audio == source_audio  # every packet, byte for byte
    with av.open(str(out)) as container:
        audio = container.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.codec_context.channels == 2
        assert container.streams.video[0].codec_context.name == "h264"
    assert _leftovers(tmp_path) == []


def _attachments(path):
    with av.open(str(path)) as container:
        return {s.name: s.data for s in container.streams if s.type == "attachment"}


def test_mkv_subtitles_audio_and_attachments_are_copied(tmp_path):
    made = make_clip(tmp_path / "in.mkv", n_frames=8, audio=True, subtitles=True,
                     attachments={"font.ttf": b"not really a font"})
    out = tmp_path / "out.mkv"
    _pass_through(made.path, out, codec="ffv1")
    assert _attachments(out) == {"font.ttf": b"not really a font"}
    assert _times(out) == made.times
    assert read_packets(out, "subtitle") == read_packets(made.path, "subtitle")
    assert [p.decode() for p in read_packets(out, "subtitle")[0]] == made.subtitle_texts
    assert read_packets(out, "audio") == read_packets(made.path, "audio")
    with av.open(str(out)) as container:
        assert container.streams.subtitles[0].codec_context.name in ("subrip", "srt")


def test_container_that_cannot_hold_a_stream(tmp_path):
    made = make_clip(tmp_path / "in.mkv", n_frames=4, audio=True, subtitles=True,
                     attachments={"font.ttf": b"glyphs"})
    with open_clip(made.path) as clip:
        info = clip.info
    with pytest.raises(OutputError, match=r"subtitle stream #2 \((subrip|srt)\).*\.mkv"):
        check_output(tmp_path / "out.mp4", src=made.path, info=info, overwrite=False,
                     codec="h264")
    warnings = check_output(tmp_path / "out.mp4", src=made.path, info=info, overwrite=False,
                            codec="h264", drop_unsupported_streams=True)
    assert len(warnings) == 2 and "subtitle" in warnings[0] and "font.ttf" in warnings[1]
    with pytest.raises(OutputError, match="--drop-unsupported-streams"):
        check_output(tmp_path / "out.avi", src=made.path, info=info, overwrite=False,
                     codec="h264")
    writer = _pass_through(made.path, tmp_path / "out.mp4", drop_unsupported_streams=True)
    assert writer.warnings == warnings
    assert read_packets(tmp_path / "out.mp4", "subtitle") == []
    assert read_packets(tmp_path / "out.mp4", "audio") == read_packets(made.path, "audio")


def test_variable_frame_rate_is_kept(tmp_path):
    pts = [0, 40, 80, 200, 210, 400, 1001, 1500]
    made = make_clip(tmp_path / "vfr.mkv", n_frames=8, pts=pts, time_base=Fraction(1, 1000))
    for name in ("out.mp4", "out.mkv"):
        _pass_through(made.path, tmp_path / name)
        assert _times(tmp_path / name) == made.times


def _y_planes(path):
    return [planes[0] for _, planes in decode_planes(path)]


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv420p10le"])
def test_luma_is_the_source_own_bit_for_bit(tmp_path, pix_fmt):
    made = make_clip(tmp_path / "in.mkv", n_frames=6, pix_fmt=pix_fmt, codec="ffv1")
    out = tmp_path / "out.mkv"
    inverted = _pass_through(made.path, out, transform=lambda rgb: rgb.max() - rgb,
                             codec="ffv1")  # lossless, so the file shows what was encoded
    assert inverted.pix_fmt == pix_fmt and inverted.luma_copied == 6
    source_planes, output_planes = decode_planes(made.path), decode_planes(out)
    assert [fmt for fmt, _ in output_planes] == [pix_fmt] * 6
    for (_, src), (_, dst) in zip(source_planes, output_planes):
        np.testing.assert_array_equal(dst[0], src[0])  # Y: the source's own
        assert not np.array_equal(dst[1], src[1])  # U changed: the colours were inverted
    # control: without keep_luma the Y plane follows the (inverted) picture
    _pass_through(made.path, tmp_path / "free.mkv", transform=lambda rgb: rgb.max() - rgb,
                  codec="ffv1", keep_luma=False)
    assert not np.array_equal(_y_planes(tmp_path / "free.mkv")[0], source_planes[0][1][0])


def test_default_h264_path_copies_luma(tmp_path):
    made = make_clip(tmp_path / "in.mp4", n_frames=5)
    out = tmp_path / "out.mp4"
    _pass_through(made.path, out, crf=0)  # x264 at CRF 0 is lossless for 8-bit
    for src, dst in zip(_y_planes(made.path), _y_planes(out)):
        np.testing.assert_array_equal(dst, src)


def test_ten_bit_stays_ten_bit_with_h264(tmp_path):
    made = make_clip(tmp_path / "in.mp4", n_frames=4, pix_fmt="yuv420p10le")
    out = tmp_path / "out.mp4"
    _pass_through(made.path, out, transform=lambda rgb: (rgb // 257).astype(np.uint8))
    with open_clip(out) as clip:
        assert clip.info.pix_fmt == "yuv420p10le" and clip.info.bit_depth == 10
        assert clip.info.codec == "h264"


def test_h265_output(tmp_path):
    made = make_clip(tmp_path / "in.mkv", n_frames=3, pix_fmt="yuv420p10le", codec="ffv1")
    out = tmp_path / "out.mp4"
    _pass_through(made.path, out, codec="h265")
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "hevc" and stream.codec_tag == "hvc1"
        assert stream.codec_context.pix_fmt == "yuv420p10le"
    assert _times(out) == made.times


def test_rotation_metadata_is_kept(tmp_path):
    made = make_clip(tmp_path / "in.mkv", n_frames=4, size=(32, 16), codec="ffv1", rotation=90)
    out = tmp_path / "out.mkv"
    _pass_through(made.path, out, codec="ffv1")
    with open_clip(made.path) as a, open_clip(out) as b:
        assert b.info.rotation == 90 and b.info.stored_size == (32, 16)
        assert (b.info.width, b.info.height) == (16, 32)
        for x, y in zip(a.frames(), b.frames()):
            assert np.abs(x.rgb.astype(int) - y.rgb).mean() < 2  # same upright picture
    # stored pixels were not turned: the luma plane is still the source's
    for src, dst in zip(_y_planes(made.path), _y_planes(out)):
        np.testing.assert_array_equal(dst, src)


def test_odd_size(tmp_path):
    made = make_clip(tmp_path / "in.mkv", n_frames=4, size=(63, 47), codec="ffv1")
    writer = _pass_through(made.path, tmp_path / "out.mp4")
    assert writer.pix_fmt == "yuv444p"  # x264 refuses odd sizes in 4:2:0
    with open_clip(tmp_path / "out.mp4") as clip:
        assert (clip.info.width, clip.info.height) == (63, 47)
        assert len(list(clip.frames())) == 4
    lossless = _pass_through(made.path, tmp_path / "out.mkv", codec="ffv1")
    assert lossless.pix_fmt == "yuv420p" and lossless.luma_copied == 4


def test_colour_tags_rate_and_aspect_are_copied(tmp_path):
    tags = {"colorspace": 1, "color_primaries": 1, "color_trc": 1, "color_range": 2}
    made = make_clip(tmp_path / "in.mov", n_frames=4, fps=Fraction(30000, 1001),
                     time_base=Fraction(1001, 30000), color_tags=tags,
                     sample_aspect_ratio=Fraction(4, 3))
    for name in ("out.mp4", "out.mov", "out.mkv"):
        _pass_through(made.path, tmp_path / name)
        with open_clip(made.path) as a, open_clip(tmp_path / name) as b:
            for key in ("colorspace", "color_primaries", "color_trc", "color_range",
                        "sample_aspect_ratio", "fps"):
                assert getattr(b.info, key) == getattr(a.info, key), (name, key)


def test_rgb_conversion_uses_the_source_matrix():
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 1] = 200  # green: Y differs a lot between BT.601 and BT.709
    y601 = np.frombuffer(rgb_to_video_frame(rgb, "yuv444p", 6, 1).planes[0], np.uint8)[0]
    y709 = np.frombuffer(rgb_to_video_frame(rgb, "yuv444p", 1, 1).planes[0], np.uint8)[0]
    y709_full = np.frombuffer(rgb_to_video_frame(rgb, "yuv444p", 1, 2).planes[0], np.uint8)[0]
    # Y = 16 + 219 * Kg * 200/255 (limited) or 255 * Kg * 200/255 (full)
    assert y601 == round(16 + 219 * 0.587 * 200 / 255)
    assert y709 == round(16 + 219 * 0.7152 * 200 / 255)
    assert y709_full == round(0.7152 * 200)


def test_choose_pix_fmt():
    assert choose_pix_fmt("libx264", "yuv420p10le", True, 64, 48) == "yuv420p10le"
    assert choose_pix_fmt("libx264", "yuv420p", False, 63, 47) == "yuv444p"
    assert choose_pix_fmt("ffv1", "yuv420p", False, 63, 47) == "yuv420p"
    assert choose_pix_fmt("libx264", "gray", False, 64, 48) == "yuv420p"  # colour output
    assert choose_pix_fmt("libx264", "yuv420p12le", True, 64, 48) == "yuv420p10le"
    assert choose_pix_fmt("libx264", None, False, 64, 48) == "yuv420p"


def test_copy_luma_checks_formats():
    a = rgb_to_video_frame(np.zeros((4, 4, 3), np.uint8), "yuv420p")
    b = rgb_to_video_frame(np.zeros((4, 4, 3), np.uint8), "yuv444p")
    with pytest.raises(ValueError, match="yuv420p 4x4 and yuv444p 4x4"):
        copy_luma(a, b)


def test_trimmed_output_starts_at_zero_with_its_audio(tmp_path):
    made = make_clip(tmp_path / "in.mkv", n_frames=12, audio=True)
    out = tmp_path / "part.mkv"
    with open_clip(made.path) as clip:
        with open_writer(out, clip.info, src_path=made.path, trimmed=True) as writer:
            for frame in clip.frames(start=0.2, duration=0.16):
                writer.write(frame.rgb, frame)
    times = _times(out)
    assert times == [t - made.times[5] for t in made.times[5:9]]
    source_audio, copied = read_packets(made.path, "audio")[0], read_packets(out, "audio")[0]
    assert 0 < len(copied) < len(source_audio)
    first = source_audio.index(copied[0])
    assert source_audio[first:first + len(copied)] == copied  # a contiguous, exact slice


def test_check_output_refusals(tmp_path):
    made = make_clip(tmp_path / "in.mp4", n_frames=3)
    with open_clip(made.path) as clip:
        info = clip.info

    def check(dst, **options):
        options = {"src": made.path, "info": info, "overwrite": False, "codec": "h264",
                   **options}
        return check_output(dst, **options)

    with pytest.raises(OutputError, match="input itself"):
        check(made.path, overwrite=True)
    with pytest.raises(OutputError, match="input itself"):
        check(tmp_path / "sub" / ".." / "in.mp4", overwrite=True)
    existing = tmp_path / "old.mp4"
    existing.write_bytes(b"x")
    with pytest.raises(OutputError, match="--overwrite"):
        check(existing)
    assert check(existing, overwrite=True) == []
    with pytest.raises(OutputError, match="does not exist"):
        check(tmp_path / "no" / "dir" / "o.mp4")
    with pytest.raises(OutputError, match="webm.*h264|libx264"):
        check(tmp_path / "o.webm")
    with pytest.raises(OutputError, match="unknown codec"):
        check(tmp_path / "o.mp4", codec="vp9")
    with pytest.raises(OutputError, match="frame folder"):
        check(tmp_path / "o.mp4", codec="png")
    with pytest.raises(OutputError, match="one frame"):
        check(tmp_path / "o.png")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.docx").write_bytes(b"x")
    with pytest.raises(OutputError, match="refusing"):
        check(precious, overwrite=True)


class Boom(Exception):
    pass


@pytest.mark.parametrize("failure", [Boom, KeyboardInterrupt])
@pytest.mark.parametrize("name", ["out.mp4", "frames", "one.png"])
def test_failure_mid_write_leaves_nothing(tmp_path, failure, name):
    made = make_clip(tmp_path / "in.mkv", n_frames=6, audio=True)
    work = tmp_path / "work"
    work.mkdir()
    dst = work / name
    with open_clip(made.path) as clip, pytest.raises(failure):
        max_frames = 1 if name.endswith(".png") else None
        info = clip.info if max_frames is None else None
        with open_writer(dst, info, src_path=made.path) as writer:
            for frame in clip.frames(max_frames=max_frames):
                writer.write(frame.rgb, frame)
            raise failure()
    assert list(work.iterdir()) == []  # neither the target nor a temporary


def test_disk_full_becomes_processing_error_and_keeps_old_output(tmp_path, monkeypatch):
    made = make_clip(tmp_path / "in.mkv", n_frames=4)
    dst = tmp_path / "out.mkv"
    dst.write_bytes(b"previous result")
    calls = {"n": 0}
    real = writer_module.rgb_to_video_frame

    def fail_on_third(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(writer_module, "rgb_to_video_frame", fail_on_third)
    with pytest.raises(ProcessingError, match="No space left") as caught:
        _pass_through(made.path, dst, overwrite=True)
    assert "\n" not in str(caught.value)
    assert dst.read_bytes() == b"previous result"
    assert _leftovers(tmp_path) == []


def test_png_folder_output(tmp_path):
    made = make_clip(tmp_path / "in.mkv", n_frames=5, codec="ffv1", audio=True)
    out = tmp_path / "frames"
    writer = _pass_through(made.path, out, codec="png")
    assert any("audio" in w for w in writer.warnings)  # said, not silently dropped
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{i:05d}.png" for i in range(5)]
    with open_clip(made.path) as clip:
        for frame, name in zip(clip.frames(), names):
            np.testing.assert_array_equal(np.asarray(Image.open(out / name)), frame.rgb)
    # a second run replaces our own frame folder when asked
    _pass_through(made.path, out, codec="png", overwrite=True)
    assert len(list(out.iterdir())) == 5 and _leftovers(tmp_path) == []


def test_png_folder_output_keeps_16_bits(tmp_path):
    made = make_clip(tmp_path / "in.mkv", n_frames=2, codec="ffv1", pix_fmt="yuv420p10le")
    out = tmp_path / "deep"
    _pass_through(made.path, out)
    with open_clip(out) as clip:
        assert clip.info.bit_depth == 16
        with open_clip(made.path) as source:
            for a, b in zip(source.frames(), clip.frames()):
                np.testing.assert_array_equal(a.rgb, b.rgb)


def test_image_output_and_folder_input_to_video(tmp_path):
    folder = tmp_path / "stills"
    make_image_folder(folder, [f"s{i}.png" for i in range(1, 6)], size=(32, 24))
    out = tmp_path / "stills.mp4"
    _pass_through(folder, out)
    assert _times(out) == [Fraction(i, 25) for i in range(5)]  # STILLS_FPS
    with open_clip(out) as clip:
        assert clip.info.colorspace == 1 and clip.info.color_range == 1  # BT.709 tagged
    single = tmp_path / "one.png"
    with open_clip(folder) as clip:
        with open_writer(single, None, src_path=folder) as writer:
            frame = next(clip.frames())
            writer.write(frame.rgb, frame)
            with pytest.raises(OutputError, match="one frame"):
                writer.write(frame.rgb, frame)
    assert not single.exists() and _leftovers(tmp_path) == []  # the error aborted the write


def test_rgb_coded_source_gets_a_yuv_matrix(tmp_path):
    made = make_clip(tmp_path / "in.mkv", n_frames=3, codec="ffv1", pix_fmt="bgr0")
    out = tmp_path / "out.mkv"
    writer = _pass_through(made.path, out, codec="ffv1")
    assert writer.pix_fmt == "yuv420p" and writer.luma_copied == 0
    with open_clip(made.path) as a, open_clip(out) as b:
        assert b.info.colorspace == 1  # BT.709, not the source's "RGB" matrix tag
        for x, y in zip(a.frames(), b.frames()):
            np.testing.assert_array_equal(x.rgb, made.rgb[x.index])  # the source is lossless
            error = np.abs(x.rgb.astype(int) - y.rgb).mean()
            wrong = y.source.to_ndarray(format="rgb24", src_colorspace="ITU601")
            assert error < 5 and error < np.abs(x.rgb.astype(int) - wrong).mean() - 1


def test_output_at_another_size_than_the_source(tmp_path):
    made = make_clip(tmp_path / "in.mp4", n_frames=4, size=(64, 48), audio=True)
    out = tmp_path / "small.mp4"
    writer = _pass_through(made.path, out, transform=lambda rgb: rgb[::2, ::2])  # 32x24
    assert writer.luma_copied == 0  # nothing to copy at another size
    with open_clip(out) as clip:
        assert (clip.info.width, clip.info.height) == (32, 24)
    assert _times(out) == made.times
    assert read_packets(out, "audio") == read_packets(made.path, "audio")
