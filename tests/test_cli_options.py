"""What a user meets first: typed choices in --help, one-line usage errors, --version, shell
completion, `vidcolor info`, and batch with the per-file colorize options."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from clips import make_clip, write_png
from vidcolor import __version__, info
from vidcolor.cli import app
from vidcolor.options import CODECS, ENGINES, MODES, PRECISIONS, PRESETS

runner = CliRunner()
WIDE = {"COLUMNS": "250"}  # so rich does not wrap the choice lists of --help


def run(*args, **options):
    return runner.invoke(app, [str(a) for a in args], **options)


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def video_size(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return stream.width, stream.height


@pytest.fixture(scope="module")
def material(tmp_path_factory):
    folder = tmp_path_factory.mktemp("options")
    clip = make_clip(folder / "in.mp4", n_frames=6, size=(64, 48), fps=10)
    ref = np.zeros((48, 64, 3), np.uint8)
    ref[:, :32] = (200, 40, 40)
    ref[:, 32:] = (40, 60, 200)
    write_png(folder / "ref.png", ref)
    return folder, clip.path


@pytest.mark.parametrize("command", ["colorize", "batch"])
def test_help_lists_every_choice(command):
    result = run(command, "--help", env=WIDE)
    assert result.exit_code == 0, result.output
    codecs = CODECS if command == "colorize" else tuple(c for c in CODECS if c != "png")
    for choices in (MODES, ENGINES, PRESETS, PRECISIONS, codecs):
        assert "|".join(choices) in result.output
    assert "--weights-dir" in result.output


@pytest.mark.parametrize("args, message", [
    (["colorize", "in.mp4", "-r", "ref.png", "--mode", "sideways"], "'--mode'"),
    (["colorize", "in.mp4", "-r", "ref.png", "--precision", "half"], "'--precision'"),
    (["colorize", "in.mp4", "-r", "ref.png", "--crf", "99"], "'--crf'"),
    (["colorize", "in.mp4"], "'--ref'"),
    (["colorize", "in.mp4", "-r", "ref.png", "--no-such-option"], "--no-such-option"),
    (["batch", "folder", "--codec", "png"], "'png' is not one of"),
    (["batch", "folder", "--max-frames", "0"], "'--max-frames'"),
    (["recolor"], "recolor"),
])
def test_usage_errors_exit_2_in_one_line(args, message):
    result = run(*args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vidcolor: error: "), result.output
    assert message in lines[0] and "--help" in lines[0]


def test_bare_command_prints_the_help():
    result = run()
    assert "colorize" in result.output and "Usage" in result.output


def test_version_option_and_command():
    for args in (["--version"], ["version"]):
        result = run(*args)
        assert result.exit_code == 0
        assert __version__ in result.output


def test_shell_completion_is_on_and_offers_the_choices():
    assert "--install-completion" in run("--help", env=WIDE).output
    script = runner.invoke(app, [], env={"_VIDCOLOR_COMPLETE": "source_bash"}, prog_name="vidcolor")
    assert script.exit_code == 0 and "_VIDCOLOR_COMPLETE=complete_bash" in script.output, \
        script.output
    for words, expected in ((["colorize", "--mode", ""], set(MODES)),
                            (["colorize", "--device", "c"], {"cpu", "cuda"})):
        env = {"_VIDCOLOR_COMPLETE": "complete_bash", "COMP_WORDS": " ".join(["vidcolor", *words]),
               "COMP_CWORD": str(len(words))}
        result = runner.invoke(app, [], env=env, prog_name="vidcolor")
        assert result.exit_code == 0 and set(result.output.split()) == expected, result.output


def test_cpu_bfloat16_support_read_from_the_flags(tmp_path):
    def flags_file(flags: str) -> Path:
        path = tmp_path / f"cpuinfo-{len(flags)}"
        path.write_text(f"processor\t: 0\nmodel name\t: Test CPU\nflags\t\t: {flags}\n\n")
        return path

    assert info.cpu_bfloat16(info.cpu_flags(flags_file("fpu sse2 avx512f avx512_bf16"))) \
        == "native (AVX512-BF16)"
    assert info.cpu_bfloat16(info.cpu_flags(flags_file("fpu amx_bf16 amx_tile avx512_bf16"))) \
        == "native (AMX, AVX512-BF16)"
    assert info.cpu_bfloat16(info.cpu_flags(flags_file("fpu sse2 avx2"))).startswith("emulated")
    assert info.cpu_flags(tmp_path / "missing") == set()
    assert info.cpu_name(flags_file("fpu")) == "Test CPU"


def test_info_reports_devices_weights_encoders_and_versions():
    result = run("info", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    cpu = data["devices"][0]
    assert cpu["name"] == "cpu"
    # What a CPU run accepts: float32 and float64; half precisions need CUDA autocast.
    assert cpu["precisions"] == ["float32", "float64"]
    assert cpu["bfloat16"] == info.cpu_bfloat16(info.cpu_flags())
    assert len(data["devices"]) == 1 + torch.cuda.device_count() + torch.backends.mps.is_available()
    assert data["weights"]["installed"] is False and data["weights"]["verified"] is False
    assert data["weights"]["path"].startswith(os.environ["VIDCOLOR_HOME"])
    assert data["encoders"]["h264"] == "libx264"
    assert data["versions"]["torch"] == torch.__version__
    assert data["versions"]["PyAV"] == av.__version__
    text = run("info")
    assert text.exit_code == 0 and "bfloat16 hardware:" in text.output and "libx264" in text.output


def test_info_verifies_installed_weights(devc_weights):
    data = json.loads(run("info", "--json").output)["weights"]
    assert data == {"path": str(devc_weights), "installed": True, "verified": True,
                    "detail": "verified: 3 checkpoints, SHA-256 and layout"}
    (devc_weights / "colornet.safetensors").write_bytes(b"damaged")
    damaged = json.loads(run("info", "--json").output)["weights"]
    assert damaged["installed"] is True and damaged["verified"] is False
    assert "colornet" in damaged["detail"]


def test_weights_dir_selects_the_devc_engine(material, seeded_install, tmp_path):
    folder, clip = material
    out = tmp_path / "devc.mp4"
    result = run("colorize", clip, "-r", folder / "ref.png", "-o", out, "--weights-dir",
                 seeded_install, "--max-frames", "1")
    assert result.exit_code == 0, result.output
    assert "devc engine" in result.output and frame_count(out) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = run("colorize", clip, "-r", folder / "ref.png", "-o", tmp_path / "x.mp4",
                  "--weights-dir", empty, "--engine", "devc")
    assert missing.exit_code != 0 and str(empty) in missing.output
    assert len(missing.output.strip().splitlines()) == 1 and not (tmp_path / "x.mp4").exists()


def test_batch_passes_every_per_file_option(material, tmp_path, monkeypatch, seeded_install):
    from vidcolor.colorizer import Colorizer

    folder, clip = material
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "one.mp4").write_bytes(clip.read_bytes())
    seen = {}

    def record(self, src, ref, dst, **options):
        seen.update(options, engine=self.engine.name)
        raise RuntimeError("recorded")

    monkeypatch.setattr(Colorizer, "colorize_video", record)
    run("batch", archive, "--ref", folder / "ref.png", "--batch-size", "3", "--start", "0.1",
        "--duration", "0.2", "--max-frames", "5", "--drop-unsupported-streams", "--overwrite",
        "--weights-dir", seeded_install, "-q")
    assert seen["batch_size"] == 3 and seen["start"] == 0.1 and seen["duration"] == 0.2
    assert seen["max_frames"] == 5 and seen["drop_unsupported_streams"] is True
    assert seen["overwrite"] is True and seen["engine"] == "devc"
    assert seen["report"] is None and seen["compare"] is None


def test_batch_reports_compares_and_overwrites_only_when_asked(material, tmp_path):
    folder, clip = material
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in ("one", "two"):
        (archive / f"{name}.mp4").write_bytes(clip.read_bytes())
    out = tmp_path / "colored"
    args = ["batch", archive, "--out", out, "--ref", folder / "ref.png", "--engine", "classic", "-q"]
    result = run(*args, "--max-frames", "2", "--report", "--compare")
    assert result.exit_code == 0, result.output
    for name in ("one", "two"):
        assert frame_count(out / f"{name}.color.mp4") == 2
        report = json.loads((out / f"{name}.color.json").read_text())
        assert report["frames"] == 2 and report["output"] == str(out / f"{name}.color.mp4")
        assert video_size(out / f"{name}.compare.mp4") == (128, 48)  # input | output
    summary = json.loads((out / "vidcolor-batch-report.json").read_text())
    assert summary["totals"]["done"] == 2
    assert {f["video"]: f["frames"] for f in summary["files"]} == {
        str(archive / "one.mp4"): 2, str(archive / "two.mp4"): 2}
    # Rerun: finished files are skipped; --overwrite colorizes them again (here 0.3 s = 3 frames).
    assert run(*args).exit_code == 0 and frame_count(out / "one.color.mp4") == 2
    assert run(*args, "--overwrite", "--duration", "0.3").exit_code == 0
    assert frame_count(out / "one.color.mp4") == 3
    # An output the batch did not write is never replaced without --overwrite.
    (archive / "three.mp4").write_bytes(clip.read_bytes())
    (out / "three.color.mp4").write_bytes(b"someone else's")
    refused = run(*args)
    assert refused.exit_code == 1 and "--overwrite" in refused.output
    assert (out / "three.color.mp4").read_bytes() == b"someone else's"


def test_codec_choices_are_the_writers():
    from vidcolor.io.writer import FRAME_FOLDER_CODEC, VIDEO_ENCODERS

    assert CODECS == (*VIDEO_ENCODERS, FRAME_FOLDER_CODEC)


@pytest.mark.parametrize("capability, bfloat16", [((9, 0), "native"), ((7, 5), "emulated")])
def test_info_lists_a_cuda_gpu_with_its_precisions(monkeypatch, capability, bfloat16):
    # No GPU here: torch.cuda's answers are faked; what is tested is how info reads them.
    from types import SimpleNamespace

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Test GPU")
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda index: SimpleNamespace(total_memory=16 * 2**30))
    gpu = info.find_devices()[1]
    assert gpu.name == "cuda:0" and "Test GPU" in gpu.description and "16 GiB" in gpu.description
    assert gpu.precisions == ["float32", "float64", "bfloat16", "float16"]
    assert gpu.bfloat16.startswith(bfloat16)
