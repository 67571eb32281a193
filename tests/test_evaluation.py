"""``evaluate`` on tiny clips written here (PNG folders and lossless FFV1 videos), checked
against scikit-image's metrics computed on the arrays that were written."""

from __future__ import annotations

import csv
import json
import math
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from rich.console import Console
from skimage import data
from skimage.color import lab2rgb, rgb2lab
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from vidcolor.eval import evaluation
from vidcolor.errors import InputError, UsageError
from vidcolor.io.frame import Frame

SIZE = (48, 64)  # H, W
N_FRAMES = 10
CUT_AT = 6  # 0-based index of the first frame of the second shot (frame number 7)


def _truth_frames() -> list[np.ndarray]:
    """Two shots: a pan over the astronaut, then a hard cut to a pan over the coffee cup."""
    astronaut, coffee = data.astronaut(), data.coffee()
    frames = []
    for t in range(N_FRAMES):
        scene, row, col = (astronaut, 200, 180) if t < CUT_AT else (coffee, 150, 250)
        step = t if t < CUT_AT else t - CUT_AT
        frames.append(scene[row + 2 * step: row + 2 * step + 2 * SIZE[0]: 2,
                            col + 2 * step: col + 2 * step + 2 * SIZE[1]: 2].copy())
    return frames


def _flickering(frames: list[np.ndarray], seed: int = 0) -> list[np.ndarray]:
    """The truth with a random colour cast per frame (same luminance): temporal flicker."""
    rng = np.random.default_rng(seed)
    out = []
    for rgb in frames:
        lab = rgb2lab(rgb)
        lab[..., 1:] += rng.uniform(-12, 12, size=2)
        out.append(np.round(np.clip(lab2rgb(lab), 0, 1) * 255).astype(np.uint8))
    return out


def _write_folder(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir()
    for i, rgb in enumerate(frames):
        Image.fromarray(rgb).save(folder / f"frame{i + 1}.png")
    return folder


def _write_ffv1(path: Path, frames: list[np.ndarray]) -> Path:
    """Lossless RGB video (FFV1, bgr0): decoding gives back exactly these pixels."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = SIZE[1], SIZE[0], "bgr0"
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="bgr0")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    truth = _truth_frames()
    output = _flickering(truth)
    return {
        "truth_frames": truth, "output_frames": output,
        "truth": _write_folder(root / "truth", truth),
        "output": _write_folder(root / "output", output),
        "truth_video": _write_ffv1(root / "truth.mkv", truth),
        "output_video": _write_ffv1(root / "output.mkv", output),
        "root": root,
    }


@pytest.fixture(scope="module")
def scored(clips):
    return evaluation.evaluate(clips["output"], clips["truth"])


def test_per_frame_scores_match_scikit_image(clips, scored):
    assert scored.frames_scored == N_FRAMES
    assert (scored.height, scored.width) == SIZE
    for row, out, truth in zip(scored.frames, clips["output_frames"], clips["truth_frames"]):
        assert row.psnr_rgb == pytest.approx(peak_signal_noise_ratio(truth, out, data_range=255))
        ab_mse = np.mean((rgb2lab(truth)[..., 1:] - rgb2lab(out)[..., 1:]) ** 2)
        assert row.psnr_ab == pytest.approx(10 * math.log10(255 ** 2 / ab_mse))
        assert row.ssim == pytest.approx(structural_similarity(
            truth, out, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
            data_range=255, channel_axis=-1), abs=1e-9)
    assert scored.psnr_rgb == pytest.approx(np.mean([r.psnr_rgb for r in scored.frames]))
    assert sorted(scored.psnr_at) == [1, 10]
    assert scored.psnr_at[10] == scored.frames[9].psnr_rgb
    assert scored.colorfulness_output > 0 and scored.colorfulness_truth > 0


def test_hard_cut_pair_is_excluded_and_flicker_raises_warp_error(scored):
    assert scored.cuts == [CUT_AT + 1]
    assert scored.frames[CUT_AT].warp_error_output is None
    assert scored.frames[0].warp_error_output is None
    assert scored.warp_pairs == N_FRAMES - 2  # first frame and the cut have no pair
    assert scored.warp_error_truth < 3.0  # the truth moves rigidly: only flow error remains
    assert scored.warp_error_output > 10 * scored.warp_error_truth
    assert "TV-L1" in scored.flow_method and scored.flow_luminance == "truth"
    assert scored.warnings == []


def test_truth_against_itself_is_perfect_and_at_the_floor(clips):
    result = evaluation.evaluate(clips["truth"], clips["truth"])
    assert all(r.psnr_rgb == math.inf and r.psnr_ab == math.inf for r in result.frames)
    assert result.ssim == pytest.approx(1.0)
    assert result.warp_error_output == result.warp_error_truth
    assert result.colorfulness_output == result.colorfulness_truth


def test_videos_score_like_the_frame_folders(clips, scored):
    result = evaluation.evaluate(clips["output_video"], clips["truth_video"])
    assert [r.psnr_rgb for r in result.frames] == pytest.approx(
        [r.psnr_rgb for r in scored.frames])
    assert result.warp_error_output == pytest.approx(scored.warp_error_output)


def test_size_mismatch_is_one_line_offering_resize(clips, tmp_path):
    bigger = [np.repeat(np.repeat(f, 2, axis=0), 2, axis=1) for f in clips["output_frames"]]
    folder = _write_folder(tmp_path / "big", bigger)
    with pytest.raises(InputError) as caught:
        evaluation.evaluate(folder, clips["truth"])
    message = str(caught.value)
    assert "\n" not in message
    assert "128x96" in message and "64x48" in message and "--resize" in message
    resized = evaluation.evaluate(folder, clips["truth"], resize=True, temporal=False)
    assert resized.resized and (resized.height, resized.width) == SIZE
    # Nearest x2 then a 2:1 shrink gives the frames back up to resampling error.
    assert resized.psnr_rgb > 25


def test_frame_count_mismatch_scores_common_frames_with_warning(clips, tmp_path):
    short = _write_folder(tmp_path / "short", clips["output_frames"][:8])
    result = evaluation.evaluate(short, clips["truth"], temporal=False)
    assert result.frames_scored == 8
    assert (result.output_frames, result.truth_frames) == (8, 10)
    assert len(result.warnings) == 1 and "scored the first 8 frames" in result.warnings[0]
    assert sorted(result.psnr_at) == [1]


def test_input_luminance_drives_the_flow(clips, tmp_path):
    grey = [np.repeat(np.round(rgb2lab(f)[..., :1] / 100 * 255).astype(np.uint8), 3, axis=2)
            for f in clips["truth_frames"]]
    folder = _write_folder(tmp_path / "grey", grey)
    calls = []
    result = evaluation.evaluate(clips["output"], clips["truth"], input=folder,
                                 progress=lambda done, total: calls.append((done, total)))
    assert result.flow_luminance == "input" and result.input_frames == N_FRAMES
    assert result.cuts == [CUT_AT + 1]
    assert calls == [(i, N_FRAMES) for i in range(1, N_FRAMES + 1)]
    small = _write_folder(tmp_path / "grey_small", [g[::2, ::2] for g in grey])
    with pytest.raises(InputError, match="the input is 32x24"):
        evaluation.evaluate(clips["output"], clips["truth"], input=small)


def test_json_and_csv(clips, tmp_path, scored):
    perfect = evaluation.evaluate(clips["truth"], clips["truth"], temporal=False)
    perfect.to_json(tmp_path / "perfect.json")
    loaded = json.loads((tmp_path / "perfect.json").read_text(),
                        parse_constant=lambda c: pytest.fail(f"non-standard JSON {c}"))
    assert loaded["psnr_rgb"] == "inf" and loaded["ssim"] == pytest.approx(1.0)
    scored.to_json(tmp_path / "scored.json")
    loaded = json.loads((tmp_path / "scored.json").read_text())
    assert loaded["frames_scored"] == N_FRAMES and len(loaded["frames"]) == N_FRAMES
    assert loaded["warp_error"]["output"] == pytest.approx(scored.warp_error_output)
    assert loaded["cuts_before_frames"] == [CUT_AT + 1]
    scored.to_csv(tmp_path / "scored.csv")
    with (tmp_path / "scored.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == N_FRAMES
    assert rows[0]["warp_error_output"] == "" and rows[1]["warp_error_output"] != ""
    assert float(rows[4]["psnr_ab"]) == pytest.approx(scored.frames[4].psnr_ab)


def test_render_table_shows_the_metrics(scored):
    console = Console(record=True, width=200)
    console.print(evaluation.render_table(scored))
    text = console.export_text()
    for expected in ("PSNR RGB (dB, mean)", f"{scored.psnr_rgb:.2f}", f"{scored.ssim:.4f}",
                     "PSNR RGB at frame 10", f"{scored.warp_error_output:.3f}", "(floor)",
                     "TV-L1", "hard cuts before frames 7"):
        assert expected in text


def test_plot_psnr_writes_a_png(tmp_path, scored):
    # matplotlib is in the test extra, so the plot is always exercised here
    evaluation.plot_psnr(scored, tmp_path / "psnr.png")
    with Image.open(tmp_path / "psnr.png") as image:
        assert image.format == "PNG" and image.size == (800, 400)


def test_plot_without_matplotlib_names_the_extra(monkeypatch, tmp_path, scored):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(UsageError, match=r"vidcolor\[plot\]"):
        evaluation.plot_psnr(scored, tmp_path / "psnr.png")


# --- streaming: never more than a couple of frames alive ---------------------------------------

@dataclass
class _Info:
    path: str
    height: int
    width: int
    frame_count: int | None


class _FakeClip:
    """A clip that makes its frames on demand and counts how many are alive at once."""

    alive = 0
    most_alive = 0

    def __init__(self, path, n_frames=40):
        self.info = _Info(str(path), SIZE[0], SIZE[1], n_frames)
        self.n_frames = n_frames

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @classmethod
    def _released(cls):
        cls.alive -= 1

    def frames(self):
        rng = np.random.default_rng(5)
        for i in range(self.n_frames):
            frame = Frame(index=i, rgb=rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8))
            _FakeClip.alive += 1
            _FakeClip.most_alive = max(_FakeClip.most_alive, _FakeClip.alive)
            weakref.finalize(frame, _FakeClip._released)
            yield frame


def test_evaluate_streams_frames(monkeypatch):
    monkeypatch.setattr("vidcolor.io.reader.open_clip", lambda path: _FakeClip(path))
    result = evaluation.evaluate("out", "truth")
    assert result.frames_scored == 40
    assert _FakeClip.most_alive <= 4  # one frame per clip, plus the next one being made


def test_sixteen_bit_truth_is_compared_on_the_8_bit_scale(clips, tmp_path):
    from clips import write_png  # tests/clips.py: PyAV's PNG encoder, 16-bit capable

    folder = tmp_path / "deep"
    folder.mkdir()
    for i, rgb in enumerate(clips["truth_frames"][:3]):
        write_png(folder / f"{i:03d}.png", rgb.astype(np.uint16) * 257)  # same picture, 16-bit
    result = evaluation.evaluate(clips["truth"], folder, temporal=False)
    assert result.frames_scored == 3 and result.warnings[0].startswith("frame counts differ")
    assert all(r.psnr_rgb > 100 for r in result.frames)  # equal up to float rounding
