"""Bad and awkward inputs, as a table: each gets one line, the right exit code, no output at the
target and an untouched input (issues 7 and 10). Errors that are not ours, signals (single runs
and batches), killed runs' leftovers, the batch manifest and the memory figure follow it."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import av
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from clips import make_audio_only, make_clip, write_png
from vidcolor.cli import app

runner = CliRunner()

OK, USAGE, FAILURE = 0, 2, 1


@dataclass
class Setup:
    """What a case runs: CLI arguments, the output path that must (not) appear, inputs to guard."""

    args: list
    out: Path | None = None
    inputs: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path, "Material"], Setup]
    exit_code: int
    message: str  # a substring of the one-line message (error or warning)
    needs_weights: bool = False  # seeded devc weights installed first
    check: Callable[[Path], None] | None = None  # more assertions on success, given tmp_path
    own_process: bool = False  # run the CLI in a fresh process (for memory figures)


@dataclass
class Material:
    folder: Path
    clip: Path          # 6 frames 64x48 with stereo AAC
    ref: Path           # colour reference PNG
    mkv_subs: Path      # MKV with a subrip subtitle stream


@pytest.fixture(scope="module")
def material(tmp_path_factory) -> Material:
    folder = tmp_path_factory.mktemp("robust")
    clip = make_clip(folder / "clip.mp4", n_frames=6, size=(64, 48), audio=True).path
    subs = make_clip(folder / "subs.mkv", n_frames=4, size=(64, 48), subtitles=True).path
    ref = np.zeros((48, 64, 3), np.uint8)
    ref[:, :32] = (200, 40, 40)
    ref[:, 32:] = (40, 60, 200)
    write_png(folder / "ref.png", ref)
    return Material(folder, clip, folder / "ref.png", subs)


def colorize(tmp: Path, m: Material, src: Path, *extra, ref: Path | None = None, out: str = "out.mp4",
             engine: str = "classic") -> Setup:
    target = tmp / out
    args = ["colorize", src, "--ref", ref or m.ref, "-o", target, "--engine", engine, *extra]
    return Setup(args=args, out=target, inputs=[p for p in (src, ref or m.ref) if Path(p).exists()])


def copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


# -- inputs ----------------------------------------------------------------------------------

def truncated_mp4(tmp, m):
    clip = make_clip(tmp / "long.mkv", n_frames=24, size=(64, 48)).path
    data = clip.read_bytes()
    cut = tmp / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    return colorize(tmp, m, cut, out="out.mkv")


def corrupt_middle_frame(tmp, m):
    clip = make_clip(tmp / "intra.mkv", n_frames=9, size=(64, 48),
                     options={"x264-params": "keyint=1"}).path
    data = bytearray(clip.read_bytes())
    with av.open(str(clip)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    pos, size = packets[4]
    data[pos + size // 3: pos + size] = bytes(size - size // 3)  # zero most of frame 4
    bad = tmp / "bad.mkv"
    bad.write_bytes(bytes(data))
    return colorize(tmp, m, bad, out="out.mkv")


def zero_frame_video(tmp, m):
    path = tmp / "empty.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    return colorize(tmp, m, path)


def big_4k_video(tmp, m):
    clip = make_clip(tmp / "big.mp4", n_frames=2, size=(4160, 2340),
                     options={"preset": "ultrafast"}).path
    return colorize(tmp, m, clip, "--report", tmp / "report.json")


def memory_bounded(tmp):
    """A 4160x2340 frame is 29 MB as RGB; work at that size runs in strips, so the whole
    process (torch and the engine alone: about 0.5 GB) stays bounded. Measured 1.3-1.5 GB
    (VmHWM, the process's own peak; AMD EPYC, 2 cores): glibc's arenas keep a varying share of
    the freed buffers. Before the strips: 2.6-3.2 GB."""
    report = json.loads((tmp / "report.json").read_text())
    assert report["frames"] == 2 and report["peak_memory_mb"] < 3000


def one_pixel_image(tmp, m):
    path = tmp / "dot.png"
    Image.fromarray(np.full((1, 1, 3), 128, np.uint8)).save(path)
    return colorize(tmp, m, path, out="dot_out.png")


def odd_sized_video(tmp, m):
    clip = make_clip(tmp / "odd.mkv", n_frames=3, size=(63, 47), pix_fmt="yuv444p").path
    return colorize(tmp, m, clip, out="out.mkv")


def sixteen_bit_frames(tmp, m):
    folder = tmp / "frames16"
    folder.mkdir()
    for i in range(2):
        write_png(folder / f"f{i}.png", np.full((24, 32, 3), 20000 * (i + 1), np.uint16))
    return colorize(tmp, m, folder, out="out16")


def rotated_video(tmp, m):
    clip = make_clip(tmp / "phone.mp4", n_frames=3, size=(64, 48), rotation=90).path
    return colorize(tmp, m, clip)


def interlaced_video(tmp, m):
    clip = make_clip(tmp / "tff.mkv", n_frames=4, size=(64, 48),
                     options={"flags": "+ildct+ilme", "x264-params": "tff=1"}).path
    return colorize(tmp, m, clip, out="out.mkv")


def vfr_video(tmp, m):
    clip = make_clip(tmp / "vfr.mkv", n_frames=5, size=(64, 48), pts=[0, 40, 100, 110, 300],
                     time_base=__import__("fractions").Fraction(1, 1000)).path
    return colorize(tmp, m, clip, out="out.mkv")


# -- references ------------------------------------------------------------------------------

def save_ref(tmp, name, mode_image: Image.Image):
    path = tmp / name
    mode_image.save(path)
    return path


def colour_pil(mode: str) -> Image.Image:
    rgb = np.zeros((48, 64, 3), np.uint8)
    rgb[:, :32] = (220, 30, 30)
    rgb[:, 32:] = (30, 200, 60)
    image = Image.fromarray(rgb)
    return image.convert(mode) if mode != "P" else image.quantize(8)


def ref_case(name, image_mode):
    def make(tmp, m):
        return colorize(tmp, m, m.clip, ref=save_ref(tmp, name, colour_pil(image_mode)))
    return make


def sixteen_bit_ref(tmp, m):
    path = tmp / "ref16.png"
    write_png(path, np.full((48, 64, 3), (60000, 2000, 2000), np.uint16))
    return colorize(tmp, m, m.clip, ref=path)


def huge_ref(tmp, m):
    rgb = np.zeros((960, 1280, 3), np.uint8)
    rgb[:, :640] = (220, 30, 30)
    rgb[:, 640:] = (30, 200, 60)
    path = tmp / "huge.png"
    Image.fromarray(rgb).save(path)
    return colorize(tmp, m, m.clip, ref=path)


# -- outputs ---------------------------------------------------------------------------------

def same_as_input(tmp, m):
    src = copy(m.clip, tmp / "film.mp4")
    return Setup(["colorize", src, "--ref", m.ref, "-o", src, "--engine", "classic"], None, [src])


def existing_output(tmp, m):
    setup = colorize(tmp, m, m.clip)
    setup.out.write_bytes(b"precious")
    setup.inputs.append(setup.out)
    setup.out = None  # it exists before and must be unchanged after
    return setup


def unwritable_folder(tmp, m):
    locked = tmp / "locked"
    locked.mkdir()
    lock_folder(locked)
    return colorize(tmp, m, m.clip, out="locked/out.mp4")


def subtitles_into_mp4(tmp, m):
    return colorize(tmp, m, m.mkv_subs)


def subtitles_dropped(tmp, m):
    return colorize(tmp, m, m.mkv_subs, "--drop-unsupported-streams")


def missing_output_folder(tmp, m):
    return colorize(tmp, m, m.clip, out="nowhere/out.mp4")


def report_in_missing_folder(tmp, m):
    return colorize(tmp, m, m.clip, "--report", tmp / "nowhere" / "report.json")


def report_is_a_folder(tmp, m):
    (tmp / "reports").mkdir()
    return colorize(tmp, m, m.clip, "--report", tmp / "reports")


def report_in_unwritable_folder(tmp, m):
    locked = tmp / "locked"
    locked.mkdir()
    lock_folder(locked)
    return colorize(tmp, m, m.clip, "--report", locked / "report.json")


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped): what a killed run leaves."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def stale_partials_of_a_killed_run(tmp, m):
    """A run killed outright (SIGKILL, power loss) left its temporaries; this run removes them."""
    pid = dead_pid()
    (tmp / f".out.mp4.partial-{pid}.mp4").write_bytes(b"half a video")
    (tmp / f".report.json.partial-{pid}").write_text('{"frames": ')
    return colorize(tmp, m, m.clip, "--report", tmp / "report.json")


# -- weights ---------------------------------------------------------------------------------

def installed_devc(tmp, m, damage: Callable[[Path], None]) -> Setup:
    from vidcolor.weights import cache

    damage(cache.installed_dir())  # the test's copy of the seeded install (fixture devc_weights)
    return colorize(tmp, m, m.clip, "--size", "64x64", engine="devc")


def truncated_weights(tmp, m):
    def cut(directory):
        path = directory / "colornet.safetensors"
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return installed_devc(tmp, m, cut)


def wrong_layout_weights(tmp, m):
    def swap(directory):
        from safetensors.torch import load_file, save_file
        path = directory / "colornet.safetensors"
        tensors = load_file(path)
        first = next(iter(tensors))
        tensors[first] = torch.zeros(3, 3)
        save_file(tensors, path)
    return installed_devc(tmp, m, swap)


def evil_pickle_zip(tmp, m):
    marker = tmp / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    member = tmp / "evil.pth"
    torch.save({"conv1_1.weight": Evil()}, member)
    archive = tmp / "release.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ("checkpoints/video_moredata_l1/nonlocal_net_iter_76000.pth",
                     "checkpoints/video_moredata_l1/colornet_iter_76000.pth", "data/vgg19_conv.pth"):
            z.write(member, name)
    setup = Setup(["download-weights", "--from-file", archive, "-q"], None, [archive])
    setup.inputs.append(marker)  # guarded: must still not exist afterwards
    return setup


def bad_crc_zip(tmp, m):
    archive = tmp / "release.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as z:
        for name in ("checkpoints/video_moredata_l1/nonlocal_net_iter_76000.pth",
                     "checkpoints/video_moredata_l1/colornet_iter_76000.pth", "data/vgg19_conv.pth"):
            z.writestr(name, b"A" * 4096)
    data = bytearray(archive.read_bytes())
    first = data.find(b"A" * 64)
    data[first: first + 8] = b"BBBBBBBB"  # payload changed, directory CRC kept
    archive.write_bytes(bytes(data))
    return Setup(["download-weights", "--from-file", archive, "-q"], None, [archive])


def garbage_zip(tmp, m):
    archive = tmp / "release.zip"
    archive.write_bytes(b"PK\x03\x04 this is not a zip")
    return Setup(["download-weights", "--from-file", archive, "-q"], None, [archive])


CASES = [
    # inputs
    Case("missing input", lambda t, m: colorize(t, m, t / "nope.mp4"), USAGE, "nope.mp4"),
    Case("folder without images", lambda t, m: colorize(t, m, (t / "empty").mkdir() or t / "empty"),
         USAGE, "empty"),
    Case("text file named .mp4", lambda t, m: colorize(
        t, m, (t / "notes.mp4").write_text("hello") and t / "notes.mp4"), USAGE, "notes.mp4"),
    Case("truncated file: frames that decode, then a warning", truncated_mp4, OK, "truncated"),
    Case("audio-only file", lambda t, m: colorize(t, m, make_audio_only(t / "song.m4a")), USAGE,
         "song.m4a"),
    Case("zero-frame video", zero_frame_video, USAGE, "empty.mp4"),
    Case("corrupt frame in the middle: decoding goes on, count reported", corrupt_middle_frame, OK,
         "corrupt frame"),
    Case("video larger than 4K: memory bounded", big_4k_video, OK, "", check=memory_bounded,
         own_process=True),
    Case("1x1 image", one_pixel_image, OK, ""),
    Case("odd-sized frames", odd_sized_video, OK, ""),
    Case("16-bit PNG frames", sixteen_bit_frames, OK, ""),
    Case("rotated phone video", rotated_video, OK, ""),
    Case("interlaced content", interlaced_video, OK, ""),
    Case("variable frame rate", vfr_video, OK, ""),
    # references
    Case("missing reference", lambda t, m: colorize(t, m, m.clip, ref=t / "none.jpg"), USAGE, "none.jpg"),
    Case("unreadable reference", lambda t, m: colorize(
        t, m, m.clip, ref=(t / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg") and t / "bad.jpg"),
        USAGE, "bad.jpg"),
    Case("grayscale reference: warned, still runs", ref_case("gray.png", "L"), OK,
         "no colors to transfer"),
    Case("RGBA reference", ref_case("rgba.png", "RGBA"), OK, ""),
    Case("palette reference", ref_case("pal.png", "P"), OK, ""),
    Case("CMYK reference", ref_case("cmyk.jpg", "CMYK"), OK, ""),
    Case("16-bit reference", sixteen_bit_ref, OK, ""),
    Case("reference 20x larger than the frames", huge_ref, OK, ""),
    Case("reference that is a video", lambda t, m: colorize(t, m, m.clip, ref=copy(m.clip, t / "r.mp4")),
         USAGE, "is a video"),
    # outputs
    Case("output is the input", same_as_input, USAGE, "output is the input"),
    Case("existing output without --overwrite", existing_output, USAGE, "--overwrite"),
    Case("output folder not writable", unwritable_folder, USAGE, "not writable"),
    Case("output folder missing", missing_output_folder, USAGE, "does not exist"),
    Case("--report folder missing: refused before any work", report_in_missing_folder, USAGE,
         "does not exist"),
    Case("--report is a folder", report_is_a_folder, USAGE, "is a folder"),
    Case("--report folder not writable", report_in_unwritable_folder, USAGE, "not writable"),
    Case("stale .partial files of a killed run are removed", stale_partials_of_a_killed_run, OK, ""),
    Case("container cannot hold a subtitle stream", subtitles_into_mp4, USAGE, ".mkv"),
    Case("... unless told to drop it", subtitles_dropped, OK, "subtitle"),
    # weights
    Case("devc weights missing", lambda t, m: colorize(t, m, m.clip, engine="devc"), USAGE,
         "download-weights"),
    Case("truncated weights file", truncated_weights, FAILURE, "colornet", needs_weights=True),
    Case("weights of the wrong layout", wrong_layout_weights, FAILURE, "colornet",
         needs_weights=True),
    Case("a pickle that runs code is refused", evil_pickle_zip, FAILURE, "release.zip"),
    Case("CRC mismatch in the zip", bad_crc_zip, FAILURE, "CRC"),
    Case("a file that is not a zip", garbage_zip, FAILURE, "release.zip"),
    # options
    Case("--size the network cannot run", lambda t, m: colorize(
        t, m, m.clip, "--preset", "official", "--size", "100x100", engine="devc"), USAGE, "nearest valid size",
        needs_weights=True),
    Case("--size below what the engine can use", lambda t, m: colorize(t, m, m.clip, "--size", "7x9"),
         USAGE, "minimum is 16x16"),
    Case("--size below what devc can use", lambda t, m: colorize(
        t, m, m.clip, "--size", "32x48", engine="devc"), USAGE, "minimum is 64x64", needs_weights=True),
    Case("unknown --device", lambda t, m: colorize(t, m, m.clip, "--device", "tpu"), USAGE, "--device"),
    Case("cuda without a GPU", lambda t, m: colorize(t, m, m.clip, "--device", "cuda"), USAGE, "CUDA"),
    Case("float16 on the CPU", lambda t, m: colorize(t, m, m.clip, "--device", "cpu", "--precision",
                                                     "float16"), USAGE, "float16"),
]


def lock_folder(folder: Path) -> None:
    """Make a folder unwritable even for root (immutable flag); plain chmod for other users."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("cannot make a folder unwritable for root here (no chattr +i)")


def unlock_all(root: Path) -> None:
    for folder in root.rglob("*"):
        if folder.is_dir():
            subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
            folder.chmod(0o700)


def fingerprint(paths: list[Path]) -> dict[str, str | None]:
    def digest(p: Path):
        if not p.exists():
            return None
        if p.is_dir():
            return ",".join(sorted(f"{q.name}:{hashlib.sha256(q.read_bytes()).hexdigest()}"
                                   for q in p.iterdir()))
        return hashlib.sha256(p.read_bytes()).hexdigest()
    return {str(p): digest(Path(p)) for p in paths}


def leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*partial*")]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case: Case, material: Material, tmp_path: Path, request):
    if case.name == "cuda without a GPU" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    if case.needs_weights:
        request.getfixturevalue("devc_weights")
    setup = case.make(tmp_path, material)
    before = fingerprint(setup.inputs)
    try:
        if case.own_process:
            done = subprocess.run([sys.executable, "-m", "vidcolor", *map(str, setup.args)],
                                  capture_output=True, text=True, timeout=600)
            exit_code, output = done.returncode, done.stdout + done.stderr
        else:
            result = runner.invoke(app, [str(a) for a in setup.args])
            exit_code, output = result.exit_code, result.output
    finally:
        unlock_all(tmp_path)
    assert exit_code == case.exit_code, output
    assert "Traceback" not in output, output
    assert case.message in output, output
    assert fingerprint(setup.inputs) == before, "an input was modified"
    assert not leftovers(tmp_path), "temporary output left behind"
    if case.exit_code != OK:
        errors = [line for line in output.splitlines() if "error:" in line]
        assert len(errors) == 1, output
        if setup.out is not None:
            assert not setup.out.exists(), "output written despite the error"
    else:
        if setup.out is not None:
            assert setup.out.exists()
        if case.check is not None:
            case.check(tmp_path)


def test_disk_full_mid_run_removes_temp(material, tmp_path, monkeypatch):
    from vidcolor.io import writer

    original = writer.VideoWriter._write
    calls = []

    def failing(self, rgb, frame):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, rgb, frame)

    monkeypatch.setattr(writer.VideoWriter, "_write", failing)
    setup = colorize(tmp_path, material, material.clip)
    result = runner.invoke(app, [str(a) for a in setup.args])
    assert result.exit_code == FAILURE
    assert "No space left on device" in result.output and "Traceback" not in result.output
    assert not setup.out.exists() and not leftovers(tmp_path)


# -- interruption ----------------------------------------------------------------------------

def start_cli(args: list, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vidcolor", *map(str, args)], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def wait_for_partial(folder: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if leftovers(folder):
            time.sleep(0.5)  # well inside the run
            return
        if process.poll() is not None:
            raise AssertionError(f"finished before it could be interrupted: {process.stderr.read()}")
        time.sleep(0.05)
    process.kill()
    raise AssertionError("no temporary output appeared")


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    folder = tmp_path_factory.mktemp("long")
    return make_clip(folder / "long.mp4", n_frames=40, size=(256, 192), audio=True).path


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_run_removes_temp(long_clip, material, tmp_path, sig, code):
    out = tmp_path / "out.mp4"
    process = start_cli(["colorize", long_clip, "--ref", material.ref, "-o", out, "--engine",
                         "classic"], tmp_path)
    wait_for_partial(tmp_path, process)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    assert not out.exists() and not leftovers(tmp_path)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_cleanup_lets_it_finish(monkeypatch, material, tmp_path, sig, code):
    """A signal that lands inside the encode thread's join (a Python handler raises wherever
    the main thread is) waits for the join to end, then stops before anything is committed."""
    from vidcolor.io import prefetch

    joined = []
    original = prefetch.WriteBehind.close

    def close_with_signal(self):
        if self._worker.is_alive():
            os.kill(os.getpid(), sig)  # delivered at the next bytecode: inside this close
        original(self)
        joined.append(not self._worker.is_alive())

    monkeypatch.setattr(prefetch.WriteBehind, "close", close_with_signal)
    setup = colorize(tmp_path, material, material.clip)
    result = runner.invoke(app, [str(a) for a in setup.args])
    assert result.exit_code == code, result.output
    assert joined and all(joined)
    assert not setup.out.exists() and not leftovers(tmp_path)


def test_second_signal_stops_at_once():
    """The latch notes one signal for the next safe point; a second one raises where it lands."""
    from vidcolor.signals import SignalLatch

    with pytest.raises(KeyboardInterrupt):
        with SignalLatch() as latch:
            os.kill(os.getpid(), signal.SIGINT)
            assert latch.received == [signal.SIGINT]  # noted, not raised
            os.kill(os.getpid(), signal.SIGINT)
            raise AssertionError("the second signal did not raise")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def one_error_line(output: str) -> str:
    """The output holds exactly one line, an error, and no traceback; returns it."""
    assert "Traceback" not in output, output
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "error:" in lines[0], output
    return lines[0]


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_a_batch_at_once_and_a_rerun_resumes(long_clip, material, tmp_path, sig, code):
    archive = tmp_path / "archive"
    archive.mkdir()
    copy(long_clip, archive / "a.mp4")
    copy(material.clip, archive / "b.mp4")
    before = fingerprint([archive / "a.mp4", archive / "b.mp4"])
    out = tmp_path / "colored"
    args = ["batch", archive, "--out", out, "--ref", material.ref, "--engine", "classic", "-q"]
    process = start_cli(args, tmp_path)
    wait_for_partial(out if out.exists() else tmp_path, process)
    signalled = time.monotonic()
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == code, stderr
    assert time.monotonic() - signalled < 30, "the batch did not stop at once"
    one_error_line(stderr)
    manifest = json.loads((out / "vidcolor-batch.json").read_text())["files"]
    assert manifest["a.mp4"]["status"] == "interrupted"  # not done, and not failed
    assert "b.mp4" not in manifest, "the batch went on to the next file"
    assert not (out / "a.color.mp4").exists() and not leftovers(out)
    if sig == signal.SIGINT:
        return  # the rerun is the same for both signals: done once (it costs a whole batch)
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "vidcolor-batch.json").read_text())["files"]
    assert {v["status"] for v in manifest.values()} == {"done"}
    assert (out / "a.color.mp4").exists() and (out / "b.color.mp4").exists()
    assert not leftovers(out) and fingerprint([archive / "a.mp4", archive / "b.mp4"]) == before


def test_sigkilled_run_leaves_a_partial_that_the_next_run_removes(long_clip, material, tmp_path):
    out = tmp_path / "out.mp4"
    args = ["colorize", long_clip, "--ref", material.ref, "-o", out, "--engine", "classic"]
    process = start_cli(args, tmp_path)
    wait_for_partial(tmp_path, process)
    process.kill()  # SIGKILL: no handler runs, the temporary stays
    process.communicate(timeout=60)
    assert leftovers(tmp_path) and not out.exists()
    result = runner.invoke(app, [str(a) for a in args] + ["--max-frames", "2"])
    assert result.exit_code == 0, result.output
    assert out.exists() and not leftovers(tmp_path)


def test_corrupt_batch_manifest_is_reported_and_kept_aside(material, tmp_path):
    archive = tmp_path / "archive"
    archive.mkdir()
    copy(material.clip, archive / "b.mp4")
    out = tmp_path / "colored"
    out.mkdir()
    (out / "vidcolor-batch.json").write_text('{"files": {"b.mp4": {"status": "do')  # cut short
    result = runner.invoke(app, ["batch", str(archive), "--out", str(out), "--ref", str(material.ref),
                                 "--engine", "classic", "-q"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "unreadable batch manifest" in lines[0], result.output
    aside = list(out.glob("vidcolor-batch.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_text() == '{"files": {"b.mp4": {"status": "do'
    assert json.loads((out / "vidcolor-batch.json").read_text())["files"]["b.mp4"]["status"] == "done"


# -- errors that are not ours ----------------------------------------------------------------

FOREIGN_ERRORS = [
    (RuntimeError("cuDNN error: CUDNN_STATUS_INTERNAL_ERROR\nExceptions details follow"),
     "RuntimeError: cuDNN error: CUDNN_STATUS_INTERNAL_ERROR"),
    (OSError(errno.EIO, "Input/output error"), "Input/output error"),
    (MemoryError(), "--batch-size or --size"),
    (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
     "out of GPU memory; try a smaller --batch-size or --size"),
]


@pytest.mark.parametrize("error, cause", FOREIGN_ERRORS, ids=lambda e: type(e).__name__)
def test_foreign_error_is_one_line_naming_the_file(error, cause, material, tmp_path, monkeypatch):
    from vidcolor.engines.classic.engine import ClassicEngine

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(ClassicEngine, "step", fail)
    setup = colorize(tmp_path, material, material.clip)
    before = fingerprint(setup.inputs)
    result = runner.invoke(app, [str(a) for a in setup.args])
    assert result.exit_code == FAILURE, result.output
    line = one_error_line(result.output)
    assert str(material.clip) in line and cause in line, line
    assert not setup.out.exists() and not leftovers(tmp_path)
    assert fingerprint(setup.inputs) == before
    # --debug: the traceback, with the original error as the cause.
    debug = runner.invoke(app, [str(a) for a in setup.args] + ["--debug"])
    assert debug.exit_code == FAILURE and isinstance(debug.exception.__cause__, type(error))
    assert not setup.out.exists() and not leftovers(tmp_path)


def test_foreign_error_in_a_batch_fails_that_file_only(material, tmp_path, monkeypatch):
    from vidcolor.engines.classic.engine import ClassicEngine

    original, calls = ClassicEngine.step, []

    def fail_first_file(self, frame_l, corr, state):
        calls.append(1)
        if len(calls) == 1:
            raise MemoryError()
        return original(self, frame_l, corr, state)

    monkeypatch.setattr(ClassicEngine, "step", fail_first_file)
    archive = tmp_path / "archive"
    archive.mkdir()
    copy(material.clip, archive / "a.mp4")
    copy(material.clip, archive / "b.mp4")
    out = tmp_path / "colored"
    result = runner.invoke(app, ["batch", str(archive), "--out", str(out), "--ref", str(material.ref),
                                 "--engine", "classic", "-q"])
    assert result.exit_code == FAILURE
    line = one_error_line(result.output)
    assert "a.mp4" in line and "--batch-size" in line, line
    files = json.loads((out / "vidcolor-batch.json").read_text())["files"]
    assert files["a.mp4"]["status"] == "failed" and files["b.mp4"]["status"] == "done"
    assert not (out / "a.color.mp4").exists() and not leftovers(out)


# -- the memory figure -----------------------------------------------------------------------

def test_peak_memory_is_the_process_own_not_its_parent(tmp_path):
    """ru_maxrss survives execve: a process started from a large one reported the parent's
    peak (a 4K run under pytest read 3037 MB, 1.4 GB alone). VmHWM is this process's own."""
    ballast = np.ones(2**26)  # 512 MiB touched in this (the parent) process
    child = subprocess.run([sys.executable, "-c",
                            "from vidcolor.memory import peak_rss_bytes; print(peak_rss_bytes())"],
                           capture_output=True, text=True, check=True)
    del ballast
    peak = int(child.stdout)
    assert 0 < peak < 2**28, peak  # a bare interpreter: tens of MiB, far below the parent's 512


def test_peak_memory_can_be_reset_for_the_next_file():
    from vidcolor import memory

    ballast = np.ones(2**25)  # 256 MiB, given back to the OS when freed (mmapped)
    del ballast
    before = memory.peak_rss_bytes()
    if not memory.reset_peak_rss():
        pytest.skip("this OS cannot reset the peak RSS mark (no /proc/self/clear_refs)")
    assert memory.peak_rss_bytes() < before - 2**27


@pytest.mark.parametrize("platform, maxrss, mib", [("linux", 2 * 1024 * 1024, 2048.0),  # KiB
                                                   ("darwin", 3 * 2**30, 3072.0)])  # bytes
def test_without_proc_peak_memory_reads_ru_maxrss_in_the_platform_unit(monkeypatch, tmp_path,
                                                                        platform, maxrss, mib):
    import types

    from vidcolor import colorizer, memory

    monkeypatch.setattr(memory, "PROC_STATUS", tmp_path / "no-proc")
    fake = types.SimpleNamespace(RUSAGE_SELF=0, getrusage=lambda who: types.SimpleNamespace(ru_maxrss=maxrss))
    monkeypatch.setitem(sys.modules, "resource", fake)
    monkeypatch.setattr(sys, "platform", platform)
    assert colorizer.peak_memory_mb(torch.device("cpu")) == mib
    # On a GPU the device's peak since the last reset is added.
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 2**29)
    assert colorizer.peak_memory_mb(torch.device("cuda")) == mib + 512.0


def test_without_proc_or_resource_the_figure_is_left_out(material, tmp_path, monkeypatch):
    from vidcolor import memory

    monkeypatch.setattr(memory, "PROC_STATUS", tmp_path / "no-proc")
    monkeypatch.setitem(sys.modules, "resource", None)  # import resource -> ImportError (Windows)
    setup = colorize(tmp_path, material, material.clip, "--report", tmp_path / "report.json")
    result = runner.invoke(app, [str(a) for a in setup.args])
    assert result.exit_code == OK, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["frames"] == 6 and "peak_memory_mb" not in report


def test_gpu_peak_is_reset_for_each_file_of_a_batch(material, tmp_path, monkeypatch):
    from vidcolor import colorizer

    resets = []
    monkeypatch.setattr(colorizer, "reset_peak_memory", lambda device: resets.append(device))
    archive = tmp_path / "archive"
    archive.mkdir()
    copy(material.clip, archive / "a.mp4")
    copy(material.clip, archive / "b.mp4")
    result = runner.invoke(app, ["batch", str(archive), "--out", str(tmp_path / "colored"),
                                 "--ref", str(material.ref), "--engine", "classic", "-q"])
    assert result.exit_code == OK, result.output
    assert len(resets) == 2
    # And the reset is the device's own: torch's peak counter on CUDA.
    calls = []
    monkeypatch.undo()
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append(device))
    colorizer.reset_peak_memory(torch.device("cuda"))
    colorizer.reset_peak_memory(torch.device("cpu"))
    assert calls == [torch.device("cuda")]
