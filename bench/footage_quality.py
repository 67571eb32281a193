"""The classic engine against plain flow propagation on real footage (issue 16).

    .venv/bin/python bench/footage_quality.py --footage /work/data/footage [--frames 120]
        [--cases box,late,cup,cut,jumps] [--methods classic,DIS flow,Farneback flow] [--exemplar]
        [--size HxW] [--speed-frames 8]

Needs two real clips, ``box.mp4`` and ``cup.mp4`` (640x480 hand-held, colourful objects moved
by hand; Debian's ``opencv-doc`` ships them gzipped under ``usr/share/doc/opencv-doc/
opencv4/html/``). Nothing here is committed: the script builds ground-truth cases from them.

Cases (``--frames`` frames each; the gray input is the truth's L):

* ``box``, ``cup``: the clips from their first frame (hand-held camera, objects moved by
  hand: independent motion, occlusion, objects entering);
* ``late``: ``box`` from its frame 200 (the reference is that later frame, another stretch
  of motion);
* ``cut``: the first half of ``box`` then the first half of ``cup`` (a hard cut);
* ``jumps``: every 3rd frame of ``box`` at 320x240 (large displacements, small frames).

``--size`` resizes every case (quicker runs on a loaded machine).

Propagation mode: the reference is the true frame 0. Exemplar mode (``--exemplar``): the
reference is a later true frame of the same clip (same scene, another moment), against global
colour transfer (Reinhard in Lab). Scores as in ``bench/classic_quality.py``: RGB PSNR against
the truth (mean over frames), warp error (paper Eq. 13: TV-L1 flow on the truth's L, occlusion
mask, pairs across a hard cut left out) of each method and of the truth itself.

Speed: seconds per 768x576 frame through ``Colorizer.colorize_frames`` (all stages), next to
a fixed reference computation timed in the same run (the machine is shared: compare ratios).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import av
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import FLOW_BASELINES, flow_propagation, global_transfer  # noqa: E402
from classic_quality import score, truth_flows  # noqa: E402

from vidcolor import Colorizer  # noqa: E402
from vidcolor.eval.metrics import to_lab  # noqa: E402

CASES = ("box", "late", "cup", "cut", "jumps")
LATE_START = 200
JUMP_STEP = 3
JUMP_SIZE = (240, 320)
SPEED_SIZE = (576, 768)
# Exemplar reference: this many frames after the case's last frame (same clip, later moment).
EXEMPLAR_GAP = 30


def read_frames(path: Path, count: int, step: int = 1) -> list[np.ndarray]:
    """The first ``count`` frames (every ``step``-th) of a video, HxWx3 uint8 RGB."""
    frames = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % step == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    if len(frames) < count:
        raise SystemExit(f"{path}: only {len(frames)} frames, need {count} (step {step})")
    return frames


def resize(frames: list[np.ndarray], size: tuple[int, int]) -> list[np.ndarray]:
    batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
    out = torch.nn.functional.interpolate(batch, size=size, mode="bilinear",
                                          align_corners=False, antialias=True)
    return list(out.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy())


def build_case(name: str, footage: Path, frames: int) -> tuple[list[np.ndarray], np.ndarray]:
    """(truth frames, exemplar reference) of one case."""
    box, cup = footage / "box.mp4", footage / "cup.mp4"
    if name == "box" or name == "cup":
        clip = read_frames(box if name == "box" else cup, frames + EXEMPLAR_GAP)
        return clip[:frames], clip[-1]
    if name == "late":
        clip = read_frames(box, LATE_START + frames + EXEMPLAR_GAP)[LATE_START:]
        return clip[:frames], clip[-1]
    if name == "cut":
        first, second = read_frames(box, frames // 2), read_frames(cup, frames - frames // 2)
        return first + second, read_frames(box, frames // 2 + EXEMPLAR_GAP)[-1]
    if name == "jumps":
        clip = resize(read_frames(box, frames + EXEMPLAR_GAP // JUMP_STEP, JUMP_STEP), JUMP_SIZE)
        return clip[:frames], clip[-1]
    raise SystemExit(f"unknown case {name!r}; cases: {', '.join(CASES)}")


def gray(frame: np.ndarray) -> np.ndarray:
    """The truth's L as a gray RGB picture (a = b = 0), what the user would give."""
    from skimage.color import lab2rgb

    lab = to_lab(frame)
    lab[..., 1:] = 0.0
    return (np.clip(lab2rgb(lab), 0, 1) * 255 + 0.5).astype(np.uint8)


def run(method: str, colorizer: Colorizer, inputs: list[np.ndarray], reference: np.ndarray,
        mode: str) -> tuple[list[np.ndarray], float]:
    start = time.perf_counter()
    if method == "classic":
        frames = list(colorizer.colorize_frames(iter(inputs), reference, mode=mode))
    elif mode == "exemplar":
        frames = list(global_transfer(inputs, reference))
    else:
        frames = list(flow_propagation(inputs, reference, FLOW_BASELINES[method]))
    return frames, (time.perf_counter() - start) / len(frames)


def reference_seconds(repeats: int = 5) -> float:
    """A fixed computation to normalise timings on a shared machine: the median time of a
    float32 2048x2048 matrix product (17 GFLOP) on the same threads."""
    a = torch.randn(2048, 2048)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        _ = a @ a
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--footage", type=Path, default=Path("/work/data/footage"))
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--methods", default="classic,DIS flow,Farneback flow")
    parser.add_argument("--exemplar", action="store_true", help="also score exemplar mode")
    parser.add_argument("--size", default=None, help="HxW: resize every case to this")
    parser.add_argument("--speed-frames", type=int, default=8, help="0: no speed figure")
    args = parser.parse_args(argv)
    methods = args.methods.split(",")

    colorizer = Colorizer(engine="classic", device="cpu", precision="float32")
    print(f"torch threads: {torch.get_num_threads()}; {args.frames} frames per case\n")
    print("| case | mode | method | PSNR (dB) | warp error (truth's) | s/frame |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    means: dict[tuple[str, str], list[float]] = {}
    for case in filter(None, args.cases.split(",")):
        truth, exemplar = build_case(case, args.footage, args.frames)
        if args.size:
            size = tuple(int(side) for side in args.size.lower().split("x"))
            truth, exemplar = resize(truth, size), resize([exemplar], size)[0]
        inputs = [gray(frame) for frame in truth]
        pairs = truth_flows(truth)
        truth_error = score(truth, truth, pairs)["warp_error"]
        modes = [("propagate", truth[0])] + ([("exemplar", exemplar)] if args.exemplar else [])
        for mode, reference in modes:
            for method in methods if mode == "propagate" else ["classic", "global transfer"]:
                frames, per_frame = run(method, colorizer, inputs, reference, mode)
                scores = score(frames, truth, pairs)
                value, error = scores["psnr"], scores["warp_error"]
                means.setdefault((mode, method), []).append(value)
                print(f"| {case} | {mode} | {method} | {value:.2f} | {error:.3f} "
                      f"({truth_error:.3f}) | {per_frame:.3f} |", flush=True)
    for (mode, method), values in means.items():
        print(f"| mean | {mode} | {method} | {np.mean(values):.2f} | | |")
    if args.speed_frames:
        clip = resize(read_frames(args.footage / "box.mp4", args.speed_frames), SPEED_SIZE)
        inputs = [gray(frame) for frame in clip]
        run("classic", colorizer, inputs[:2], clip[0], "propagate")  # warm-up
        unit = reference_seconds()
        _, per_frame = run("classic", colorizer, inputs, clip[0], "propagate")
        unit = (unit + reference_seconds()) / 2
        print(f"\nclassic, propagation, {SPEED_SIZE[1]}x{SPEED_SIZE[0]}: {per_frame:.3f} s/frame "
              f"(all stages); reference computation (2048^2 float32 matmul) {unit * 1e3:.1f} ms: "
              f"{per_frame / unit:.1f} units per frame")


if __name__ == "__main__":
    main()
