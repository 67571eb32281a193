"""Reference matching: how often the right scene's reference ranks first, and by what margin.

    python bench/reference_matching.py                         # synthetic scenes only
    python bench/reference_matching.py --footage /work/data/footage/box.mp4 /work/data/footage/cup.mp4
    python bench/reference_matching.py --footage ... --mutual   # also the classic engine's own signal (slow)

A query is a shot's first batch (4 gray frames, the luminance of the truth); its reference
is a colored frame of the same scene from another moment (never the same frame), and every
other scene offers one reference too. Real clips: queries at 5 moments, references at 5
moments at least a fifth of the clip away (20 pairs per clip). Synthetic scenes: the
photographs of tests/edits.py under camera moves, references framed differently (3 pairs per
scene), at the footage's size and at the tests' 90x160. Every query is ranked with the pool in
each of its rotations (the choice's tie rule favours the reference given first).

Signals: the keypoint scene match both engines use (``engines/scene_match.py``), its layout
term alone, and with ``--mutual`` the classic engine's own features (mutual nearest
neighbours) and its mean confidence. The printed threshold is the midpoint between the lowest
right and the highest wrong score of the scene match (``LOW_SCENE_MATCH``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from bench.common import machine_summary, markdown_table  # noqa: E402
from edits import SCENES, ShotSpec, render_shot  # noqa: E402
from vidcolor.demo.clip import luminance_only  # noqa: E402
from vidcolor.engines import scene_match  # noqa: E402
from vidcolor.pipeline.shots import best_reference  # noqa: E402

QUERY_FRAMES = 4  # the loop's first batch (pipeline/loop.py DEFAULT_BATCH_SIZE)


def footage_cases(path: str, size: tuple[int, int] | None):
    """(query frames, reference) pairs of one real clip, at least a fifth of it apart."""
    import torch.nn.functional as F

    from vidcolor.io.reader import open_clip

    with open_clip(path) as clip:
        frames = [f.rgb for f in clip.frames()]
    if size is not None:
        def shrink(rgb):
            x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True)
            return x[0].permute(1, 2, 0).round().clamp(0, 255).byte().numpy()
        frames = [shrink(f) for f in frames]
    n = len(frames)
    cases = []
    for q in np.linspace(0, n - QUERY_FRAMES, 5).astype(int):
        for r in np.linspace(0, n - 1, 5).astype(int):
            if abs(int(q) - int(r)) >= n // 5:
                cases.append(([luminance_only(f) for f in frames[q:q + QUERY_FRAMES]], frames[r]))
    return cases


def synthetic_cases(scene: str, size: tuple[int, int], seed: int):
    """A panning, zooming shot of a photograph; references framed elsewhere, zoomed otherwise."""
    shot = render_shot(ShotSpec(scene, 24, ((0.45, 0.4), (0.55, 0.6)), (1.3, 1.6)), size, seed)
    wide = render_shot(ShotSpec(scene, 1, ((0.6, 0.55), (0.6, 0.55)), (1.1, 1.1)), size, seed)[0]
    close = render_shot(ShotSpec(scene, 1, ((0.35, 0.5), (0.35, 0.5)), (1.8, 1.8)), size, seed)[0]
    gray = [luminance_only(f) for f in shot]
    return [(gray[0:QUERY_FRAMES], wide), (gray[12:12 + QUERY_FRAMES], close),
            (gray[0:QUERY_FRAMES], close)]


class Signals:
    """Each signal prepares a reference once and scores a query against it."""

    def __init__(self, size: tuple[int, int], mutual: bool):
        from vidcolor.engines.classic.engine import ClassicEngine
        from vidcolor.pipeline.presets import make_preset

        self.engine = ClassicEngine()
        self.plan = make_preset("default", self.engine, size, None)
        self.mutual = mutual

    def query(self, frames):
        labs = torch.cat([self.plan.prepare(f)[0] for f in frames])[:, :1]
        return labs, scene_match.describe_frames(labs)

    def reference(self, rgb):
        lab = self.plan.prepare_reference(rgb)
        return self.engine.prepare_reference(lab) if self.mutual else \
            scene_match.describe(lab[:, :1])

    def scores(self, query, ref) -> dict[str, float]:
        labs, described = query
        keys = ref.scene if self.mutual else ref
        out = {"scene match": scene_match.match_described(described, keys),
               "layout only": float(np.mean([scene_match.layout_similarity(f, keys)
                                             for f in described]))}
        if self.mutual:
            out["classic mutual NN"] = self.engine.mutual_match(labs, ref)
            out["classic mean confidence"] = float(
                self.engine.correspond(labs, ref).confidence.mean())
        return out


def evaluate(groups: dict[str, dict[str, list]], mutual: bool):
    """Per group and signal: right-first counts over every pool rotation, margins, ranges."""
    results = {}
    for group, scenes in groups.items():
        size = next(iter(scenes.values()))[0][1].shape[:2]
        signals = Signals(size, mutual)
        with torch.inference_mode():
            others = {name: signals.reference(cases[0][1]) for name, cases in scenes.items()}
            for name, cases in scenes.items():
                for frames, ref in cases:
                    query = signals.query(frames)
                    pool = [name] + [o for o in scenes if o != name]
                    scored = [signals.scores(query, signals.reference(ref))] + \
                        [signals.scores(query, others[o]) for o in pool[1:]]
                    for signal in scored[0]:
                        values = [s[signal] for s in scored]
                        r = results.setdefault((group, signal), {"right": 0, "orders": 0,
                                                                "queries": 0, "margins": [],
                                                                "rights": [], "wrongs": []})
                        for shift in range(len(pool)):  # every rotation of the order given
                            order = list(range(shift, len(pool))) + list(range(shift))
                            chosen = order[best_reference({k: values[j]
                                                           for k, j in enumerate(order)})]
                            r["right"] += chosen == 0
                            r["orders"] += 1
                        r["queries"] += 1
                        r["margins"].append(values[0] - max(values[1:]))
                        r["rights"].append(values[0])
                        r["wrongs"].append(max(values[1:]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--footage", nargs="*", default=[], help="real clips, one scene each")
    parser.add_argument("--footage-size", type=int, nargs=2, metavar=("H", "W"),
                        help="resize the footage first (default: as it is)")
    parser.add_argument("--mutual", action="store_true",
                        help="also the classic engine's mutual-NN fraction and mean confidence")
    args = parser.parse_args()
    print(machine_summary())
    started = time.perf_counter()
    size = tuple(args.footage_size) if args.footage_size else None
    groups: dict[str, dict[str, list]] = {}
    if args.footage:
        real = {Path(p).stem: footage_cases(p, size) for p in args.footage}
        footage_hw = next(iter(real.values()))[0][1].shape[:2]
        groups["footage + synthetic"] = {**real, **{s: synthetic_cases(s, footage_hw, i)
                                                     for i, s in enumerate(SCENES)}}
    groups["synthetic 90x160"] = {s: synthetic_cases(s, (90, 160), i)
                                  for i, s in enumerate(SCENES)}
    results = evaluate(groups, args.mutual)
    rows = []
    for (group, signal), r in results.items():
        rows.append([group, signal, f"{r['right']}/{r['orders']} ({r['queries']} queries)",
                     f"{min(r['margins']):+.3f}", f"{min(r['rights']):.3f}",
                     f"{max(r['wrongs']):.3f}"])
    print()
    print(markdown_table(["queries", "signal", "right first (every order)", "min margin",
                          "right min", "best wrong max"], rows))
    for group in groups:
        r = results[(group, "scene match")]
        print(f"\n{group}: scene match threshold midpoint "
              f"{(min(r['rights']) + max(r['wrongs'])) / 2:.3f} (LOW_SCENE_MATCH = "
              f"{scene_match.LOW_SCENE_MATCH})")
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
