"""The command line as a user runs it: colorize, batch, eval, exit codes and messages."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
from typer.testing import CliRunner

from clips import make_clip, make_image_folder, read_packets, write_png
from vidcolor.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def frame_times(path: Path) -> list:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [f.pts * stream.time_base for f in container.decode(stream)]


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    """A tiny clip with stereo AAC audio and a two-colour reference."""
    folder = tmp_path_factory.mktemp("material")
    clip = make_clip(folder / "in.mp4", n_frames=6, size=(64, 48), audio=True)
    ref = np.zeros((48, 64, 3), np.uint8)
    ref[:, :32] = (200, 40, 40)
    ref[:, 32:] = (40, 60, 200)
    write_png(folder / "ref.png", ref)
    return folder, clip


def test_colorize_video_keeps_frames_timestamps_and_audio(material, tmp_path):
    folder, clip = material
    out = tmp_path / "out.mp4"
    report = tmp_path / "report.json"
    compare = tmp_path / "compare.mp4"
    result = run("colorize", clip.path, "--ref", folder / "ref.png", "-o", out,
                 "--engine", "classic", "--report", report, "--compare", compare)
    assert result.exit_code == 0, result.output
    assert "No devc weights" not in result.output  # classic was asked for explicitly
    assert f"wrote {out}: 6 frames" in result.output
    assert frame_times(out) == frame_times(clip.path)
    assert read_packets(out, "audio") == read_packets(clip.path, "audio")
    data = json.loads(report.read_text())
    assert data["frames"] == 6 and len(data["confidence"]) == 6
    assert data["input_probe"]["audio_streams"] == 1
    assert data["output_probe"]["frame_count"] == 6
    assert {"reference", "correspondence", "colorization", "encode"} <= set(data["stage_seconds"])
    assert data["peak_memory_mb"] > 0 and data["fps"] > 0
    with av.open(str(compare)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (128, 48)


def test_colorize_adds_color(material, tmp_path):
    folder, clip = material
    out = tmp_path / "out.mkv"
    assert run("colorize", clip.path, "--ref", folder / "ref.png", "-o", out,
               "--engine", "classic", "-q").exit_code == 0
    with av.open(str(out)) as container:
        rgb = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    saturation = (rgb.max(axis=2) - rgb.min(axis=2)).mean()
    assert saturation > 10  # a gray picture would be ~0


def test_default_output_name_and_auto_fallback_message(material, tmp_path):
    folder, clip = material
    src = tmp_path / "old.mp4"
    src.write_bytes(clip.path.read_bytes())
    result = run("colorize", src, "--ref", folder / "ref.png", "--max-frames", "2")
    assert result.exit_code == 0, result.output
    assert "No devc weights installed: using the classic engine" in result.output
    assert (tmp_path / "old.color.mp4").exists()
    assert len(frame_times(tmp_path / "old.color.mp4")) == 2


def test_existing_output_is_refused_then_overwritten(material, tmp_path):
    folder, clip = material
    out = tmp_path / "out.mp4"
    out.write_bytes(b"keep me")
    result = run("colorize", clip.path, "--ref", folder / "ref.png", "-o", out, "--engine", "classic")
    assert result.exit_code == 2
    assert out.read_bytes() == b"keep me"
    assert "--overwrite" in result.output
    result = run("colorize", clip.path, "--ref", folder / "ref.png", "-o", out,
                 "--engine", "classic", "--overwrite", "--max-frames", "1")
    assert result.exit_code == 0, result.output
    assert len(frame_times(out)) == 1


def test_frame_folder_and_single_image(material, tmp_path):
    folder, _ = material
    frames = tmp_path / "frames"
    make_image_folder(frames, ["f1.png", "f2.png", "f10.png"], size=(40, 30), bit_depth=16)
    result = run("colorize", frames, "--ref", folder / "ref.png", "--engine", "classic", "-q")
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "frames_color").iterdir())
    assert len(written) == 3
    from vidcolor.io.images import load_image

    assert load_image(written[0]).dtype == np.uint16  # 16-bit in, 16-bit out
    result = run("colorize", frames / "f2.png", "--ref", folder / "ref.png", "--engine", "classic", "-q")
    assert result.exit_code == 0, result.output
    assert load_image(frames / "f2.color.png").shape == (30, 40, 3)


def test_official_preset_outputs_working_size(material, tmp_path):
    folder, clip = material
    out = tmp_path / "official"
    result = run("colorize", clip.path, "--ref", folder / "ref.png", "-o", out, "--engine", "classic",
                 "--preset", "official", "--size", "64x96", "--codec", "png", "--max-frames", "2")
    assert result.exit_code == 0, result.output
    from vidcolor.io.images import load_image

    pictures = sorted(out.iterdir())
    assert len(pictures) == 2 and load_image(pictures[0]).shape == (64, 96, 3)


def test_quiet_prints_nothing_on_success(material, tmp_path):
    folder, clip = material
    result = run("colorize", clip.path, "--ref", folder / "ref.png", "-o", tmp_path / "o.mp4",
                 "--engine", "classic", "-q", "--max-frames", "1")
    assert result.exit_code == 0 and result.output == ""


@pytest.mark.parametrize("args, message", [
    (["--mode", "sideways"], "'sideways' is not one of 'exemplar', 'propagate'"),
    (["--preset", "fancy"], "'fancy' is not one of 'default', 'official'"),
    (["--size", "big"], "--size must look like"),
    (["--engine", "magic"], "'magic' is not one of 'auto', 'devc', 'classic'"),
    (["--device", "tpu"], "--device must be one of"),
    (["--precision", "half"], "'half' is not one of"),
    (["--codec", "divx"], "'divx' is not one of"),
])
def test_bad_options_exit_2_with_one_line(material, tmp_path, args, message):
    folder, clip = material
    out = tmp_path / "o.mp4"
    result = run("colorize", clip.path, "--ref", folder / "ref.png", "-o", out, *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1
    assert not out.exists()


def test_batch_cli_pairs_runs_and_resumes(material, tmp_path):
    folder, clip = material
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in ("one", "two"):
        (archive / f"{name}.mp4").write_bytes(clip.path.read_bytes())
    (archive / "one.png").write_bytes((folder / "ref.png").read_bytes())
    (archive / "broken.mp4").write_text("not a video")
    (archive / "broken.png").write_bytes((folder / "ref.png").read_bytes())
    out = tmp_path / "colored"
    result = run("batch", archive, "--out", out, "--engine", "classic")
    assert result.exit_code == 1  # broken.mp4 failed
    assert "two.mp4: skipped, no reference found" in result.output
    assert (out / "one.color.mp4").exists() and not (out / "two.color.mp4").exists()
    manifest = json.loads((out / "vidcolor-batch.json").read_text())["files"]
    assert manifest["one.mp4"]["status"] == "done" and manifest["broken.mp4"]["status"] == "failed"
    before = (out / "one.color.mp4").stat().st_mtime_ns
    result = run("batch", archive, "--out", out, "--engine", "classic", "--ref", folder / "ref.png")
    assert result.exit_code == 1
    assert (out / "one.color.mp4").stat().st_mtime_ns == before  # done: skipped
    assert (out / "two.color.mp4").exists()


def test_version_and_help():
    assert run("version").exit_code == 0
    result = run("--help")
    assert result.exit_code == 0
    for command in ("colorize", "batch", "download-weights", "eval"):
        assert command in result.output


def test_poor_reference_is_reported_with_its_time_range(tmp_path):
    from skimage import data

    from vidcolor.demo.clip import write_demo_clip

    clip = tmp_path / "demo.mp4"
    write_demo_clip(clip, 6, size=(96, 128), with_audio=False)
    wheel = tmp_path / "wheel.png"
    write_png(wheel, np.ascontiguousarray(data.colorwheel()[..., :3]))
    result = run("colorize", clip, "--ref", wheel, "-o", tmp_path / "o.mp4", "--engine", "classic")
    assert result.exit_code == 0, result.output
    assert "the reference matches poorly at 00:00:00.000-00:00:00." in result.output


def test_eval_cli_scores_and_writes_json_csv(material, tmp_path):
    folder, clip = material
    out = tmp_path / "colored.mkv"
    assert run("colorize", clip.path, "--ref", folder / "ref.png", "-o", out, "--engine", "classic",
               "--codec", "ffv1", "-q").exit_code == 0
    result = run("eval", out, "--gt", clip.path, "--json", tmp_path / "e.json", "--csv", tmp_path / "e.csv")
    assert result.exit_code == 0, result.output
    assert "PSNR" in result.output and "warp error" in result.output
    assert "frames" in json.loads((tmp_path / "e.json").read_text())
    assert len((tmp_path / "e.csv").read_text().strip().splitlines()) == 1 + 6  # header + frames
    fewer = run("eval", out, "--gt", folder / "ref.png")  # 1 frame of the same size
    assert fewer.exit_code == 0 and "frame" in fewer.output.splitlines()[0]
    small = tmp_path / "small.png"
    write_png(small, np.zeros((24, 32, 3), np.uint8))
    mismatch = run("eval", out, "--gt", small)
    assert mismatch.exit_code == 2 and "--resize" in mismatch.output


def test_download_weights_from_file_then_verify(seeded_release_zip):
    assert run("download-weights", "--verify").exit_code == 2  # nothing installed yet
    result = run("download-weights", "--from-file", seeded_release_zip)
    assert result.exit_code == 0, result.output
    assert "installed devc weights in" in result.output
    verified = run("download-weights", "--verify")
    assert verified.exit_code == 0, verified.output
    assert verified.output.count("\n") == 3  # one line per checkpoint
