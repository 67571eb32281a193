"""Colorizing an edited sequence across shots (classic engine): the right reference per shot in
any order, each shot as if colorized alone, frames and audio kept, pinned keyframes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from clips import read_packets
from edits import CUT, DISSOLVE, ShotSpec, TransitionSpec, make_edit, write_edit
from vidcolor import Colorizer
from vidcolor.demo.clip import _photo, _view
from vidcolor.eval.metrics import psnr
from vidcolor.io.images import save_image
from vidcolor.io.reader import open_clip

SIZE = (48, 80)
SCENES = ("coffee", "chelsea", "astronaut")


def _frames(path):
    with open_clip(path) as clip:
        return [f.rgb for f in clip.frames()]


@pytest.fixture(scope="module")
def film(tmp_path_factory):
    """Three scenes, cut, dissolve, cut back to the first scene (it recurs)."""
    folder = tmp_path_factory.mktemp("film")
    shots = [ShotSpec("coffee", 10), ShotSpec("chelsea", 10), ShotSpec("astronaut", 12),
             ShotSpec("coffee", 10, ((0.5, 0.6), (0.5, 0.5)), (1.5, 1.6))]
    edit = make_edit(shots, [TransitionSpec(CUT), TransitionSpec(DISSOLVE, frames=6),
                             TransitionSpec(CUT)], SIZE)
    video = write_edit(folder / "film.mp4", edit, audio=True)
    refs = {}
    for scene in SCENES:
        picture = (_view(_photo(scene), SIZE, (0.5, 0.5), 1.0)[0].permute(1, 2, 0) * 255
                   + 0.5).clamp(0, 255).byte().numpy()
        refs[scene] = folder / f"{scene}.png"
        save_image(refs[scene], picture)
    return edit, video, refs, folder


def test_each_shot_gets_its_reference_and_matches_a_run_alone(film, tmp_path):
    edit, video, refs, _ = film
    colorizer = Colorizer(engine="classic")
    order = [refs["astronaut"], refs["coffee"], refs["chelsea"]]  # not the film's order
    out, report = tmp_path / "out.mp4", tmp_path / "report.json"
    summary = colorizer.colorize_video(video, order, out, report=report)
    shots = json.loads(report.read_text())["shots"]
    assert [s["start_frame"] for s in shots] == edit.shot_starts
    assert [s["reference"] for s in shots] == [str(refs[s]) for s in edit.scenes]
    assert all(s["how"] == "matched" for s in shots)
    combined = _frames(out)
    assert summary.frames == len(combined) == len(edit.frames)
    assert read_packets(out, "audio") == read_packets(video, "audio")
    for shot in shots:
        a, b = shot["start_frame"], shot["end_frame"]
        alone = tmp_path / f"alone{a}.mp4"
        colorizer.colorize_video(video, refs[edit.scenes[shot["index"]]], alone,
                                 start=a / 24, max_frames=b - a, detect_shots=False)
        truth = edit.frames[a:b]
        gap = np.mean([psnr(c, t) for c, t in zip(combined[a:b], truth)]) \
            - np.mean([psnr(c, t) for c, t in zip(_frames(alone), truth)])
        # the same computation on the same decoded frames: only the encoder's rounding differs
        assert abs(gap) < 0.3, (shot, gap)


def test_pinned_keyframes_seed_propagation_and_other_shots_fall_back(film, tmp_path):
    edit, video, _, folder = film
    key = folder / "key.png"
    save_image(key, edit.frames[12])  # a colored frame of shot 1 (frames 10-19)
    notices = []
    colorizer = Colorizer(engine="classic", notify=notices.append)
    report = tmp_path / "r.json"
    colorizer.colorize_video(video, [f"00:00:00.450={key}"], tmp_path / "p.mp4",
                             mode="propagate", report=report)
    shots = json.loads(report.read_text())["shots"]
    assert shots[1]["how"] == "pinned" and shots[1]["reference"] == str(key)
    assert [s["how"] for i, s in enumerate(shots) if i != 1] == ["matched"] * (len(shots) - 1)
    assert sum("no pinned keyframe" in n for n in notices) == len(shots) - 1


def test_ref_dir_reads_an_export_back(film, tmp_path):
    from vidcolor.shots import detect_shots
    from vidcolor.shots.export import export_frames

    edit, video, _, _ = film
    keys = tmp_path / "keys"
    shots = detect_shots(video)
    export_frames(video, shots, keys)
    report = tmp_path / "r.json"
    Colorizer(engine="classic").colorize_video(video, None, tmp_path / "o.mp4", ref_dir=keys,
                                               report=report)
    got = json.loads(report.read_text())["shots"]
    assert [s["how"] for s in got] == ["pinned"] * len(shots)
    assert [s["reference"] for s in got] == [str(p) for p in sorted(keys.iterdir())]


def test_a_bad_pinned_time_is_one_line_exit_2(film, tmp_path):
    import subprocess
    import sys

    _, video, refs, _ = film
    result = subprocess.run([sys.executable, "-m", "vidcolor", "colorize", str(video),
                             "--engine", "classic", "--ref", f"99={refs['coffee']}",
                             "-o", str(tmp_path / "x.mp4")], capture_output=True, text=True)
    assert result.returncode == 2 and "past the end" in result.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_devc_engine_matches_by_scene_and_resets_per_shot(film, tmp_path, devc_weights):
    """The devc engine ranks references by the shared keypoint scene match, so even seeded
    weights pick each shot's scene; a shot whose scene has no reference is warned about."""
    edit, video, refs, _ = film
    report = tmp_path / "r.json"
    colorizer = Colorizer(engine="devc")
    summary = colorizer.colorize_video(video, [refs["chelsea"], refs["coffee"]],
                                       tmp_path / "d.mp4", size=(64, 64), report=report,
                                       max_frames=22)
    shots = json.loads(report.read_text())["shots"]
    assert [s["start_frame"] for s in shots] == [0, 10, edit.boundaries[1].frame]
    assert shots[-1]["end_frame"] == summary.frames == 22
    assert [s["reference"] for s in shots[:2]] == [str(refs["coffee"]), str(refs["chelsea"])]
    assert all(s["how"] == "matched" for s in shots)
    assert shots[0]["confidence"] >= colorizer.engine.low_match > shots[2]["confidence"]
    assert [w for w in summary.warnings if "shot 2" in w]  # astronaut: no reference of it
