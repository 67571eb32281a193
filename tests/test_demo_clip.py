"""The ground-truth demo clip: its content (motion, a cut) and the files it is written to."""

import av
import numpy as np
import pytest

from vidcolor.demo.clip import (
    cut_index,
    demo_reference,
    luminance_only,
    make_truth_frames,
    write_demo_clip,
)
from vidcolor.errors import OptionError
from vidcolor.motion.flow import consistency_mask, estimate_flow
from vidcolor.eval.metrics import is_hard_cut, to_lab

SIZE = (48, 64)


def _luminance(rgb):
    return (to_lab(rgb)[..., 0] / 100.0).astype(np.float32)


def test_truth_frames_move_within_shots_and_cut_once():
    n_frames = 12
    frames = make_truth_frames(n_frames, SIZE)
    assert len(frames) == n_frames
    assert all(f.shape == (*SIZE, 3) and f.dtype == np.uint8 for f in frames)
    cut = cut_index(n_frames)
    assert 0 < cut < n_frames
    reliable = []
    for t in range(1, n_frames):
        before, after = _luminance(frames[t - 1]), _luminance(frames[t])
        assert not np.array_equal(frames[t - 1], frames[t])  # the camera always moves
        forward, backward = estimate_flow(after, before), estimate_flow(before, after)
        reliable.append(consistency_mask(forward, backward).mean())
    within = [r for t, r in enumerate(reliable, start=1) if t != cut]
    # Within a shot flow explains most of the picture; across the cut it does not.
    assert min(within) > 0.6
    assert reliable[cut - 1] < min(within)
    # Colour photographs, not gray: the truth has chroma.
    assert np.abs(to_lab(frames[0])[..., 1:]).mean() > 10


def test_frames_are_deterministic_and_the_reference_is_a_wider_view():
    first = make_truth_frames(3, SIZE)
    again = make_truth_frames(3, SIZE)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    reference = demo_reference(SIZE)
    assert reference.shape == (*SIZE, 3) and not np.array_equal(reference, first[0])


def test_luminance_only_keeps_l_and_drops_chroma():
    frame = make_truth_frames(1, SIZE)[0]
    gray = luminance_only(frame)
    assert np.abs(gray.astype(int) - gray[..., :1].astype(int)).max() <= 1  # R = G = B
    np.testing.assert_allclose(to_lab(gray)[..., 0], to_lab(frame)[..., 0], atol=0.5)


def test_write_demo_clip_has_h264_video_and_an_aac_tone(tmp_path):
    path = tmp_path / "clip.mp4"
    info = write_demo_clip(path, 10, SIZE, with_audio=True, fps=24)
    assert info.n_frames == 10 and info.cut_index == cut_index(10)
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264" and (video.height, video.width) == SIZE
        assert audio.codec_context.name == "aac"
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 10
    assert np.abs(frames[0].astype(int) - frames[0][..., :1].astype(int)).max() <= 6  # gray
    with av.open(str(path)) as container:
        samples = np.concatenate([f.to_ndarray().ravel() for f in container.decode(audio=0)])
    assert abs(len(samples) / 48000 - 10 / 24) < 0.1
    spectrum = np.abs(np.fft.rfft(samples[2048:2048 + 8192]))
    assert abs(np.argmax(spectrum) * 48000 / 8192 - 440) < 10  # the A we wrote


def test_write_demo_clip_without_audio_and_in_colour(tmp_path):
    path = tmp_path / "truth.mp4"
    write_demo_clip(path, 4, SIZE, with_audio=False, grayscale=False)
    with av.open(str(path)) as container:
        assert len(container.streams.audio) == 0
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(to_lab(frame)[..., 1:]).mean() > 10


def test_within_shot_pairs_are_not_taken_for_cuts():
    n_frames = 12
    frames = make_truth_frames(n_frames, (96, 128))
    cut = cut_index(n_frames)
    luminance = [_luminance(f) for f in frames]
    # Within-shot pairs must not look like cuts; the detector may or may not see this cut
    # (same scene, similar tones), which the warp error handles with the occlusion mask.
    assert not any(is_hard_cut(luminance[t - 1], luminance[t])
                   for t in range(1, n_frames) if t != cut)


def test_bad_options_raise(tmp_path):
    with pytest.raises(OptionError, match="n_frames"):
        make_truth_frames(0, SIZE)
    with pytest.raises(OptionError, match=r"\(8, 64\)"):
        make_truth_frames(2, (8, 64))
    assert make_truth_frames(1, (47, 63))[0].shape == (47, 63, 3)  # odd is fine in memory
    with pytest.raises(OptionError, match="even"):
        write_demo_clip(tmp_path / "odd.mp4", 2, (47, 64))
    with pytest.raises(Exception, match="does not exist"):
        write_demo_clip(tmp_path / "missing" / "x.mp4", 2, SIZE)
