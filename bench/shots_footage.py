"""The issue's Done-when on an edit of real footage, end to end (development only).

    python bench/shots_footage.py /work/data/footage/box.mp4 /work/data/footage/cup.mp4
    python bench/shots_footage.py A.mp4 B.mp4 --size 480 640 --piece 60

The edit alternates pieces of the two clips far apart in time: A, cut, B, dissolve (16
frames), A, fade through black (8 out, 4 black, 8 in), B, cut, A; so both scenes recur. It
is written as gray H.264 with the first clip's audio-free stereo tone (tests/edits.py), and:

1. ``vidcolor shots --json`` scores the transitions (F1, tests/edits.py's matching);
2. ``colorize`` with one reference per scene (a colored frame of another moment than any
   piece) in both orders: the reference each shot got, the mean per-shot PSNR against the
   truth next to colorizing each detected shot alone with its own scene's reference;
3. ``--mode propagate --ref TIME=KEY`` with each shot's first colored frame pinned: the mean
   per-shot PSNR next to separate per-shot propagation runs;
4. frame counts and audio packets of every output against the input.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench.common import machine_summary  # noqa: E402
from clips import read_packets  # noqa: E402
from edits import CUT, DISSOLVE, FADE, TransitionSpec, join_shots, score, write_edit  # noqa: E402

FPS = 24  # write_edit's rate


def read_clip(path: str, size: tuple[int, int]) -> list[np.ndarray]:
    import torch
    import torch.nn.functional as F

    from vidcolor.io.reader import open_clip

    frames = []
    with open_clip(path) as clip:
        for frame in clip.frames():
            x = torch.from_numpy(frame.rgb).permute(2, 0, 1)[None].float()
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True)
            frames.append(x[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy())
    return frames


def build(paths: list[str], size: tuple[int, int], piece: int):
    """The edit and one reference per scene (a frame between the pieces, never in the edit)."""
    clips = [read_clip(p, size) for p in paths]
    names = [Path(p).stem for p in paths]
    uses = [0, 1, 0, 1, 0]  # A B A B A
    taken = [0, 0]
    pieces, spans = [], [[], []]
    for use in uses:
        frames = clips[use]
        count = uses.count(use)
        gap = (len(frames) - count * piece) // max(1, count)
        start = taken[use] * (piece + gap)
        taken[use] += 1
        pieces.append(frames[start:start + piece])
        spans[use].append((start, start + piece))
    references = []
    for use, frames in enumerate(clips):
        first_end = spans[use][0][1]
        second = spans[use][1][0] if len(spans[use]) > 1 else len(frames)
        references.append((names[use], frames[(first_end + second) // 2]))
    transitions = [TransitionSpec(CUT), TransitionSpec(DISSOLVE, frames=16),
                   TransitionSpec(FADE, frames=8, black=4), TransitionSpec(CUT)]
    return join_shots(pieces, transitions, [names[u] for u in uses]), references


def frames_of(path: Path) -> list[np.ndarray]:
    from vidcolor.io.reader import open_clip

    with open_clip(path) as clip:
        return [f.rgb for f in clip.frames()]


def mean_psnr(frames, truth) -> float:
    """Mean per-frame PSNR; frames equal to the truth (the black of a fade) are left out."""
    from vidcolor.eval.metrics import psnr

    values = [psnr(a, b) for a, b in zip(frames, truth)]
    return float(np.mean([v for v in values if np.isfinite(v)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clips", nargs=2)
    parser.add_argument("--size", type=int, nargs=2, default=(240, 320), metavar=("H", "W"))
    parser.add_argument("--piece", type=int, default=48, help="frames per piece")
    args = parser.parse_args()
    print(machine_summary())
    from vidcolor import Colorizer
    from vidcolor.io.images import save_image

    edit, references = build(args.clips, tuple(args.size), args.piece)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = write_edit(tmp / "edit.mp4", edit, audio=True)
        refs = {}
        for name, rgb in references:
            refs[name] = tmp / f"{name}.png"
            save_image(refs[name], rgb)
        print(f"edit: {len(edit.frames)} frames {args.size[0]}x{args.size[1]}, scenes "
              f"{edit.scenes}, true boundaries {[(b.frame, b.kind) for b in edit.boundaries]}")

        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vidcolor", "shots", str(video), "--json",
                        str(tmp / "shots.json")], check=True, capture_output=True)
        detected = json.loads((tmp / "shots.json").read_text())["shots"]
        part = score(edit.boundaries, [(s["start_frame"], s["transition"]) for s in detected[1:]])
        print(f"\n1. vidcolor shots ({time.perf_counter() - started:.1f} s): "
              + ", ".join(f"{k} F1 {part[k].f1:.3f}" for k in (CUT, DISSOLVE, FADE, "all"))
              + f"; detected {[(s['start_frame'], s['transition']) for s in detected[1:]]}")

        colorizer = Colorizer(engine="classic")
        audio = read_packets(video, "audio")
        checks = []
        combined_runs = {}
        for order in (list(refs), list(reversed(refs))):
            out, report = tmp / f"all_{order[0]}.mp4", tmp / f"r_{order[0]}.json"
            started = time.perf_counter()
            summary = colorizer.colorize_video(video, [refs[n] for n in order], out, report=report)
            shots = json.loads(report.read_text())["shots"]
            got = [Path(s["reference"]).stem for s in shots]
            truth = [edit.scenes[edit.shot_of_frame[(s["start_frame"] + s["end_frame"]) // 2]]
                     for s in shots]
            right = sum(g == t for g, t in zip(got, truth))
            checks.append(len(frames_of(out)) == len(edit.frames) == summary.frames
                          and read_packets(out, "audio") == audio)
            combined_runs[tuple(order)] = (out, shots, truth)
            stages = summary.stage_seconds
            print(f"\n2. references given as {order} ({time.perf_counter() - started:.0f} s): "
                  f"right reference for {right} of {len(shots)} shots; scores "
                  f"{[round(s['confidence'], 3) for s in shots]}; warnings {summary.warnings}; "
                  f"detection {stages['shots']:.2f} s and matching "
                  f"{stages.get('matching', 0.0):.2f} s of a {summary.seconds:.1f} s run "
                  f"({100 * stages['shots'] / summary.seconds:.1f} % and "
                  f"{100 * stages.get('matching', 0.0) / summary.seconds:.1f} %)")
        out, shots, truth_scenes = combined_runs[tuple(refs)]
        combined = frames_of(out)
        gaps = []
        for shot, scene in zip(shots, truth_scenes):
            a, b = shot["start_frame"], shot["end_frame"]
            alone = tmp / f"alone{a}.mp4"
            colorizer.colorize_video(video, refs[scene], alone, start=a / FPS,
                                     max_frames=b - a, detect_shots=False)
            gaps.append((mean_psnr(combined[a:b], edit.frames[a:b]),
                         mean_psnr(frames_of(alone), edit.frames[a:b])))
        print("   per-shot PSNR, combined vs alone: "
              + ", ".join(f"{c:.2f}/{s:.2f}" for c, s in gaps)
              + f"; mean {np.mean([c for c, _ in gaps]):.2f} vs {np.mean([s for _, s in gaps]):.2f}"
              f" dB (gap {np.mean([c - s for c, s in gaps]):+.3f})")

        pinned = []
        for shot in shots:
            a = shot["start_frame"]
            key = tmp / f"key{a}.png"
            save_image(key, edit.frames[a])
            pinned.append((a, shot["end_frame"], key))
        out, report = tmp / "prop.mp4", tmp / "rp.json"
        summary = colorizer.colorize_video(
            video, [f"{(a + 0.5) / FPS:.4f}={key}" for a, _, key in pinned], out,
            mode="propagate", report=report)
        checks.append(len(frames_of(out)) == len(edit.frames) == summary.frames
                      and read_packets(out, "audio") == audio)
        how = [s["how"] for s in json.loads(report.read_text())["shots"]]
        combined = frames_of(out)
        gaps = []
        for a, b, key in pinned:
            alone = tmp / f"palone{a}.mp4"
            colorizer.colorize_video(video, key, alone, mode="propagate", start=a / FPS,
                                     max_frames=b - a, detect_shots=False)
            gaps.append((mean_psnr(combined[a:b], edit.frames[a:b]),
                         mean_psnr(frames_of(alone), edit.frames[a:b])))
        print(f"\n3. propagate, one pinned keyframe per shot ({how}): per-shot PSNR combined vs "
              "alone: " + ", ".join(f"{c:.2f}/{s:.2f}" for c, s in gaps)
              + f"; mean {np.mean([c for c, _ in gaps]):.2f} vs {np.mean([s for _, s in gaps]):.2f}"
              f" dB (gap {np.mean([c - s for c, s in gaps]):+.3f})")
        print(f"\n4. frame count and audio packets unchanged in all three outputs: {all(checks)}")


if __name__ == "__main__":
    main()
