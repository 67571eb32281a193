"""``vidcolor batch --cluster`` on a local Ray cluster of 2 CPU workers, with tiny clips.

Every cluster output is checked against an independent single-process run: the sequential
batch (``run_batch`` with one ``Colorizer``), or, for a split file, each range colorized on
its own and written by the test.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from clips import make_clip, pattern_frame, read_packets, write_png
from vidcolor.batch import cluster, cluster_progress, ranges
from vidcolor.batch.runner import MANIFEST_NAME, plan_jobs, run_batch

WORKERS = 2
# Workers run torch with their share of the threads and the reference run with the test's,
# so float sums may round differently and flip an 8-bit chroma value by one here and there;
# one flipped value in every pixel would still be 20*log10(255) = 48 dB, while a wrong frame
# or a recurrence carried across a range start is far below 40 dB. 60 dB is the bar the
# project's acceptance check uses against the sequential batch.
MIN_PSNR_DB = 60.0

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="the cluster extra is not installed: "
                                      "pip install vidcolor[cluster]")


def decoded(path: Path) -> tuple[list[np.ndarray], list[int], list[np.ndarray]]:
    """RGB pictures, pts and luma planes of a video's frames."""
    pictures, pts, luma = [], [], []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            pictures.append(frame.to_ndarray(format="rgb24"))
            pts.append(frame.pts)
            plane = frame.planes[0]
            rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
            luma.append(rows[:, : plane.width].copy())
    return pictures, pts, luma


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def assert_same_video(got: Path, expected: Path) -> None:
    got_rgb, got_pts, got_luma = decoded(got)
    exp_rgb, exp_pts, exp_luma = decoded(expected)
    assert len(got_rgb) == len(exp_rgb) and got_pts == exp_pts
    for i, (g, e) in enumerate(zip(got_rgb, exp_rgb)):
        assert psnr_db(g, e) >= MIN_PSNR_DB, f"{got.name} frame {i}: {psnr_db(g, e):.1f} dB"
    for kind in ("audio", "subtitle"):
        assert read_packets(got, kind) == read_packets(expected, kind)


def pid_writing(output: Path, driver: subprocess.Popen) -> int | None:
    """The worker process writing ``output`` (its pid is in the writer's temporary name),
    seen as soon as the muxer opens the file: at the first frame for FFV1, only after the
    look-ahead (about 40 frames) for x264; None if the driver ended first."""
    pattern = re.compile(rf"\.{re.escape(output.name)}\.partial-(\d+)")
    while driver.poll() is None:
        for partial in output.parent.glob(f".{output.name}.partial-*"):
            return int(pattern.match(partial.name).group(1))
        time.sleep(0.01)
    return None


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".partial" in p.name or p.name == ranges.PARTS_FOLDER]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray cluster for the module's in-process tests (the driver reuses it)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=WORKERS, include_dashboard=False, log_to_driver=False,
             object_store_memory=cluster.LOCAL_OBJECT_STORE_BYTES, logging_level="ERROR")
    yield
    ray.shutdown()


def make_archive(folder: Path, clips: dict[str, dict]) -> Path:
    """Videos with a reference each (a coloured pattern frame beside the video)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, options in clips.items():
        made = make_clip(folder / name, **options)
        write_png((folder / name).with_suffix(".png"),
                  pattern_frame(7, made.width, made.height))
    return folder


def sequential_batch(archive: Path, out: Path, codec: str) -> None:
    from vidcolor.colorizer import Colorizer

    colorizer = Colorizer(engine="classic")
    run_batch(plan_jobs(archive, out, None), out,
              lambda job: colorizer.colorize_video(job.video, job.reference, job.output,
                                                   codec=codec, overwrite=True),
              lambda *event: None)


VIDEO_OPTIONS = dict(mode="exemplar", preset="default", size=None, codec="h264", crf=18)
CLASSIC = dict(engine="classic", device="cpu", precision="auto")


@needs_ray
def test_killed_worker_mid_file_batch_completes_like_the_sequential_one(tmp_path):
    """The acceptance check in small: the CLI with local:2, one worker SIGKILLed while it
    writes a file; exit 0, every output, nothing partial, the sequential batch's pictures."""
    archive = make_archive(tmp_path / "archive", {
        "long.mkv": dict(n_frames=60, size=(96, 64), audio=True),
        "short.mkv": dict(n_frames=12, size=(64, 48), subtitles=True),
    })
    out = tmp_path / "colored"
    # FFV1: libx264's frame threads do not always give the same bits twice on tiny frames,
    # so two h264 runs of the same pictures can differ; a lossless codec compares the pictures.
    process = subprocess.Popen(
        [sys.executable, "-m", "vidcolor", "batch", str(archive), "--out", str(out),
         "--engine", "classic", "--codec", "ffv1", "--cluster", f"local:{WORKERS}", "--report"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = pid_writing(out / "long.color.mkv", process)
    if killed is not None:
        os.kill(killed, signal.SIGKILL)  # the worker writing long.mkv, mid-file
    stdout, stderr = process.communicate(timeout=600)
    assert killed is not None, f"no worker was seen writing long.mkv:\n{stderr}"
    assert process.returncode == 0, stderr
    assert f"pid {killed}) died" in stderr and "retrying" in stderr
    assert leftovers(out) == []
    manifest = json.loads((out / MANIFEST_NAME).read_text())["files"]
    assert {name: entry["status"] for name, entry in manifest.items()} == {
        "long.mkv": "done", "short.mkv": "done"}
    assert manifest["long.mkv"]["attempts"] >= 2  # Ray may also stop a worker (memory)
    assert "workers" in stderr and "attempts" in stderr  # the --report table

    expected = tmp_path / "sequential"
    sequential_batch(archive, expected, codec="ffv1")
    for name in ("long.color.mkv", "short.color.mkv"):
        assert_same_video(out / name, expected / name)


@needs_ray
def test_sigterm_on_the_driver_stops_workers_and_leaves_no_partial_output(tmp_path):
    archive = make_archive(tmp_path / "archive", {"reel.mkv": dict(n_frames=40, size=(96, 64))})
    out = tmp_path / "colored"
    process = subprocess.Popen(
        [sys.executable, "-m", "vidcolor", "batch", str(archive), "--out", str(out),
         "--engine", "classic", "--codec", "ffv1", "--cluster", f"local:{WORKERS}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker = pid_writing(out / "reel.color.mkv", process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=600)
    assert worker is not None, stderr
    assert process.returncode == 143, stderr
    assert stderr.strip().splitlines()[-1] == (
        "vidcolor: error: stopped by SIGTERM; partial output removed")
    assert not cluster.pid_alive(worker)
    assert leftovers(out) == [] and not (out / "reel.color.mkv").exists()
    manifest = json.loads((out / MANIFEST_NAME).read_text())["files"]
    assert manifest["reel.mkv"]["status"] == "partial"  # redone by the next run


@needs_ray
def test_split_file_equals_its_ranges_colorized_one_by_one(tmp_path, local_ray):
    """A file with cuts at 9, 12 and 17, split into ranges of at least 5 frames (so 12 stays
    inside the range [9, 17)): the recurrence starts afresh at every cut, in a range too, and
    the join copies timestamps, luma and audio from the source once. The reference: each shot
    colorized by its own ``colorize_frames`` call, written by the test through the writer."""
    from vidcolor.colorizer import Colorizer, open_output
    from vidcolor.io import reader

    archive = make_archive(tmp_path / "archive", {
        "reel.mp4": dict(n_frames=24, size=(64, 48), audio=True),
        "broken.mp4": dict(n_frames=2)})
    (archive / "broken.mp4").write_bytes(b"not a video at all")
    out = tmp_path / "colored"
    cuts = [9, 12, 17]
    events = []
    outcome = cluster.run_cluster_batch(
        plan_jobs(archive, out, None), out, cluster.ClusterSpec(local_workers=WORKERS),
        colorizer_options=CLASSIC, video_options=VIDEO_OPTIONS | {"codec": "ffv1"},
        cuts=lambda video: cuts, min_piece_frames=5, emit=lambda *e: events.append(e))
    assert [j.video.name for j in outcome.groups["done"]] == ["reel.mp4"]
    assert [j.video.name for j in outcome.groups["failed"]] == ["broken.mp4"]
    record = outcome.records[archive / "reel.mp4"]
    assert [(r.start, r.end) for r in record.ranges] == [(0, 9), (9, 17), (17, None)]
    assert record.frames == 24 and leftovers(out) == []

    colorizer = Colorizer(engine="classic", device="cpu")
    expected = tmp_path / "expected.mp4"
    with reader.open_clip(archive / "reel.mp4") as clip:
        frames = list(clip.frames())
        with open_output(expected, clip.info, archive / "reel.mp4", preset="default",
                         codec="ffv1", crf=18, overwrite=False) as writer:
            for a, b in [(0, 9), (9, 12), (12, 17), (17, 24)]:
                pictures = colorizer.colorize_frames([f.rgb for f in frames[a:b]],
                                                     archive / "reel.png")
                for frame, rgb in zip(frames[a:b], pictures):
                    writer.write(rgb, frame)
    joined = out / "reel.color.mp4"
    assert_same_video(joined, expected)
    joined_luma, source_luma = decoded(joined)[2], decoded(archive / "reel.mp4")[2]
    assert all(np.array_equal(a, b) for a, b in zip(joined_luma, source_luma))  # copied, exact

    # A second driver with the same command resumes: the finished file is skipped.
    before = joined.stat().st_mtime_ns
    again = cluster.run_cluster_batch(
        plan_jobs(archive, out, None), out, cluster.ClusterSpec(local_workers=WORKERS),
        colorizer_options=CLASSIC, video_options=VIDEO_OPTIONS | {"codec": "ffv1"})
    assert [j.video.name for j in again.groups["skipped"]] == ["reel.mp4"]
    assert joined.stat().st_mtime_ns == before


def make_film_with_reference_folder(archive: Path) -> Path:
    """film.mp4 (coffee, cut, chelsea, dissolve, astronaut, cut, coffee again) and film/ with
    the three scenes' pictures, named so that the first of them suits only one shot."""
    from edits import CUT, DISSOLVE, ShotSpec, TransitionSpec, make_edit, write_edit
    from vidcolor.demo.clip import _photo, _view
    from vidcolor.io.images import save_image

    size = (48, 80)
    shots = [ShotSpec("coffee", 10), ShotSpec("chelsea", 10), ShotSpec("astronaut", 12),
             ShotSpec("coffee", 10, ((0.5, 0.6), (0.5, 0.5)), (1.5, 1.6))]
    edit = make_edit(shots, [TransitionSpec(CUT), TransitionSpec(DISSOLVE, frames=6),
                             TransitionSpec(CUT)], size)
    archive.mkdir(parents=True, exist_ok=True)
    write_edit(archive / "film.mp4", edit, audio=True)
    (archive / "film").mkdir()
    for number, scene in enumerate(("astronaut", "chelsea", "coffee"), 1):
        picture = (_view(_photo(scene), size, (0.5, 0.5), 1.0)[0].permute(1, 2, 0) * 255
                   + 0.5).clamp(0, 255).byte().numpy()
        save_image(archive / "film" / f"{number}-{scene}.png", picture)
    return archive


@needs_ray
def test_a_split_film_with_a_reference_folder_equals_the_sequential_batch(tmp_path, local_ray):
    """Several references for one video (its own folder): on the cluster, whole or split at
    its shots, every shot gets the reference the sequential batch gives it."""
    from vidcolor.batch.runner import job_references
    from vidcolor.colorizer import Colorizer

    archive = make_film_with_reference_folder(tmp_path / "archive")
    expected = tmp_path / "sequential"
    colorizer, chosen = Colorizer(engine="classic"), []
    run_batch(plan_jobs(archive, expected, None), expected,
              lambda job: chosen.append(colorizer.colorize_video(
                  job.video, job_references(job), job.output, codec="ffv1", overwrite=True)),
              lambda *event: None)
    references = {shot["reference"] for shot in chosen[0].shots}
    assert len(references) == 3  # each scene its own picture: a single reference would fail
    for cuts, out in ((None, tmp_path / "whole"), (ranges.shot_cuts, tmp_path / "split")):
        outcome = cluster.run_cluster_batch(
            plan_jobs(archive, out, None), out, cluster.ClusterSpec(local_workers=WORKERS),
            colorizer_options=CLASSIC, video_options=VIDEO_OPTIONS | {"codec": "ffv1"},
            cuts=cuts, min_piece_frames=5)
        assert [j.video.name for j in outcome.groups["done"]] == ["film.mp4"]
        if cuts is not None:
            assert len(outcome.records[archive / "film.mp4"].ranges) == 4
        assert_same_video(out / "film.color.mp4", expected / "film.color.mp4")


@pytest.mark.parametrize("args, message", [
    (["--split-shots"], "--split-shots needs --cluster"),
    (["--split-shots", "--cluster", "local:2", "--preset", "official"], "--preset official"),
])
def test_split_shots_refusals_are_usage_errors(tmp_path, args, message):
    from typer.testing import CliRunner
    from vidcolor.cli import app

    result = CliRunner().invoke(app, ["batch", str(tmp_path), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_split_ranges_start_at_cuts_and_cover_the_file():
    assert ranges.split_ranges([], 10) == [ranges.FrameRange(0, None)]
    assert ranges.split_ranges([30, 5, 12, 30, 50], 10) == [
        ranges.FrameRange(0, 12), ranges.FrameRange(12, 30), ranges.FrameRange(30, 50),
        ranges.FrameRange(50, None)]  # 5 is closer than 10 to frame 0: kept with its shot


@pytest.mark.parametrize("value, spec", [
    ("local:3", cluster.ClusterSpec(local_workers=3)),
    ("ray://head:10001", cluster.ClusterSpec(address="ray://head:10001"))])
def test_cluster_option_forms(value, spec):
    assert cluster.parse_cluster(value) == spec


@pytest.mark.parametrize("value", ["local:0", "local:x", "spark", "ray://"])
def test_bad_cluster_option_is_a_usage_error(value):
    from vidcolor.errors import OptionError

    with pytest.raises(OptionError):
        cluster.parse_cluster(value)


def test_cluster_ray_reads_the_address_from_the_environment(monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    assert cluster.parse_cluster("ray") == cluster.ClusterSpec(address="10.0.0.5:6379")
    monkeypatch.delenv("RAY_ADDRESS")
    with pytest.raises(Exception, match="RAY_ADDRESS"):
        cluster.parse_cluster("ray")


def test_without_ray_one_line_names_the_extra(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from vidcolor.cli import app

    archive = make_archive(tmp_path / "archive", {"a.mp4": dict(n_frames=2)})
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed: import fails
    result = CliRunner().invoke(app, ["batch", str(archive), "--out", str(tmp_path / "out"),
                                      "--engine", "classic", "--cluster", "local:2"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "vidcolor: error: --cluster needs Ray, which is not installed: "
        "pip install vidcolor[cluster]"]
    assert not (tmp_path / "out").exists()


def test_archive_bar_shows_files_frames_and_fps():
    import io

    from rich.console import Console

    screen = io.StringIO()
    bar = cluster_progress.ArchiveBar(Console(file=screen, force_terminal=True, width=120))
    bar.start(files=2, frames=100)
    bar.file_done()
    bar.update(60)
    bar.bar.refresh()
    bar.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())  # colours and cursor moves
    assert "files 1/2" in text and "60/100 frames" in text and " fps" in text
