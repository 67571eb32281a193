"""batch: pairing rules, manifest, resume, and one broken file among good ones (no model)."""

import json

import pytest

from vidcolor.batch.runner import MANIFEST_NAME, Manifest, plan_jobs, run_batch
from vidcolor.errors import InputError, Interrupted, ProcessingError


def touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def archive(tmp_path):
    folder = tmp_path / "archive"
    touch(folder / "a.mp4"); touch(folder / "a.jpg")            # same stem
    touch(folder / "b.mkv"); touch(folder / "b" / "x2.png"); touch(folder / "b" / "x10.png")
    touch(folder / "c.mov"); touch(folder / "refs" / "c.png")   # refs/ folder
    touch(folder / "d10.mp4"); touch(folder / "d2.mp4")          # no reference
    touch(folder / "notes.txt")
    return folder


def test_pairing_rules(archive, tmp_path):
    jobs = plan_jobs(archive, tmp_path / "out", None)
    names = [j.video.name for j in jobs]
    assert names == ["a.mp4", "b.mkv", "c.mov", "d2.mp4", "d10.mp4"]  # natural order
    refs = {j.video.name: j.reference for j in jobs}
    assert refs["a.mp4"] == archive / "a.jpg"
    assert refs["b.mkv"] == archive / "b" / "x2.png"
    assert refs["c.mov"] == archive / "refs" / "c.png"
    assert refs["d2.mp4"] is None and refs["d10.mp4"] is None
    assert jobs[0].output == tmp_path / "out" / "a.color.mp4"


def test_shared_reference_wins(archive, tmp_path):
    shared = touch(tmp_path / "ref.png")
    assert {j.reference for j in plan_jobs(archive, tmp_path / "out", shared)} == {shared}


def test_folder_without_videos(tmp_path):
    touch(tmp_path / "x.txt")
    with pytest.raises(InputError, match="no video files"):
        plan_jobs(tmp_path, tmp_path / "out", None)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, lambda: Interrupted("SIGTERM", exit_code=143)],
                         ids=["SIGINT", "SIGTERM"])
def test_failure_does_not_stop_and_rerun_resumes(archive, tmp_path, stop):
    out = tmp_path / "out"
    jobs = plan_jobs(archive, out, None)
    calls = []
    first_run = [True]

    def colorize(job):
        calls.append(job.video.name)
        if job.video.name == "b.mkv":
            raise ProcessingError(f"{job.video}: broken")
        if job.video.name == "c.mov" and first_run[0]:
            raise stop()  # the first run is stopped here: a signal, not a failure
        job.output.write_bytes(b"done")

    with pytest.raises((KeyboardInterrupt, Interrupted)):
        run_batch(jobs, out, colorize, lambda *a: None)
    manifest = json.loads((out / MANIFEST_NAME).read_text())["files"]
    assert manifest["a.mp4"]["status"] == "done"
    assert manifest["b.mkv"]["status"] == "failed" and "broken" in manifest["b.mkv"]["error"]
    assert manifest["c.mov"]["status"] == "interrupted"  # not done, not failed

    calls.clear()
    first_run[0] = False
    events = []
    outcome = run_batch(jobs, out, colorize, lambda kind, job, msg: events.append((kind, job.video.name)))
    assert calls == ["b.mkv", "c.mov"]  # a.mp4 skipped, b retried (fails again), c redone
    assert [j.video.name for j in outcome["skipped"]] == ["a.mp4"]
    assert [j.video.name for j in outcome["failed"]] == ["b.mkv"]
    assert [j.video.name for j in outcome["done"]] == ["c.mov"]
    assert [j.video.name for j in outcome["noref"]] == ["d2.mp4", "d10.mp4"]
    assert Manifest(out / MANIFEST_NAME).status(jobs[2]) == "done"


def test_done_but_output_deleted_is_redone(archive, tmp_path):
    out = tmp_path / "out"
    jobs = plan_jobs(archive, out, None)[:1]
    run_batch(jobs, out, lambda job: job.output.write_bytes(b"1"), lambda *a: None)
    jobs[0].output.unlink()
    calls = []
    run_batch(jobs, out, lambda job: (calls.append(1), job.output.write_bytes(b"1")), lambda *a: None)
    assert calls == [1]
