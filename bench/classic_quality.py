"""Score the classic engine against the two baselines on the ground-truth demo clip (issue 5).

    .venv/bin/python bench/classic_quality.py [--frames 48] [--size 240x320]
                                              [--speed-size 576x768] [--speed-frames 8]

The clip (``vidcolor.demo.clip``) has pans, a zoom, a moving object and a hard cut; the input is
the L of the truth. Propagation mode gets the true frame 0 as reference; exemplar mode gets the
whole coffee photo, a wider view of the same scene. The classic engine runs through the public
``Colorizer.colorize_frames`` with the default preset (what the CLI does, minus video I/O).

Scores (``vidcolor.eval.metrics``, the paper's metrics): PSNR of RGB against the truth, mean over
frames; warp error (paper Eq. 13) over consecutive pairs, flow and occlusion mask computed on
the truth's luminance, the pair across the cut left out; colourfulness (Hasler & Süsstrunk).
Speed: wall seconds per frame at ``--speed-size`` (the issue's 768x576), every stage of
``colorize_frames`` included, on a clip of ``--speed-frames`` frames.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import flow_propagation, global_transfer  # noqa: E402

from vidcolor import Colorizer  # noqa: E402
from vidcolor.demo.clip import (  # noqa: E402
    cut_index,
    demo_reference,
    luminance_only,
    make_truth_frames,
)
from vidcolor.motion.flow import consistency_mask, estimate_flow  # noqa: E402
from vidcolor.eval.metrics import (  # noqa: E402
    colorfulness,
    is_hard_cut,
    psnr,
    to_lab,
    warp_error,
)


def parse_size(text: str) -> tuple[int, int]:
    height, width = (int(part) for part in text.lower().split("x"))
    return height, width


def truth_flows(truth: list[np.ndarray], cut: int | None = None
                ) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """(t, flow, mask) for each consecutive pair (t-1, t) within a shot, on the truth's L.
    ``cut``: the first frame of the second shot; None: cuts found by ``is_hard_cut``."""
    luminance = [(to_lab(frame)[..., 0] / 100.0).astype(np.float32) for frame in truth]
    pairs = []
    for t in range(1, len(truth)):
        if t == cut or (cut is None and is_hard_cut(luminance[t - 1], luminance[t])):
            continue
        flow = estimate_flow(luminance[t - 1], luminance[t])
        back = estimate_flow(luminance[t], luminance[t - 1])
        pairs.append((t, flow, consistency_mask(flow, back)))
    return pairs


def score(frames: list[np.ndarray], truth: list[np.ndarray], pairs) -> dict[str, float]:
    ab = [to_lab(frame)[..., 1:] for frame in frames]
    errors = [warp_error(ab[t - 1], ab[t], flow, mask) for t, flow, mask in pairs]
    return {
        "psnr": float(np.mean([psnr(out, ref) for out, ref in zip(frames, truth)])),
        "warp_error": float(np.mean(errors)),
        "colorfulness": float(np.mean([colorfulness(frame) for frame in frames])),
    }


def run_classic(colorizer: Colorizer, gray: list[np.ndarray], reference: np.ndarray,
                mode: str) -> tuple[list[np.ndarray], float]:
    """Colorized frames and wall seconds per frame, everything included (reference side,
    Lab conversions, correspondence, colorization, chroma upsampling, RGB)."""
    start = time.perf_counter()
    outputs = list(colorizer.colorize_frames(iter(gray), reference, mode=mode))
    return outputs, (time.perf_counter() - start) / max(1, len(outputs))


def timed(frames_iterator) -> tuple[list[np.ndarray], float]:
    start = time.perf_counter()
    frames = list(frames_iterator)
    return frames, (time.perf_counter() - start) / max(1, len(frames))


def quality_rows(colorizer: Colorizer, n_frames: int, size: tuple[int, int]) -> list[list]:
    truth = make_truth_frames(n_frames, size)
    gray = [luminance_only(frame) for frame in truth]
    pairs = truth_flows(truth, cut_index(n_frames))
    reference = demo_reference(size)
    runs = {
        ("propagation", "classic"): run_classic(colorizer, gray, truth[0], "propagate"),
        ("propagation", "flow baseline"): timed(flow_propagation(gray, truth[0])),
        ("exemplar", "classic"): run_classic(colorizer, gray, reference, "exemplar"),
        ("exemplar", "global transfer"): timed(global_transfer(gray, reference)),
    }
    rows = []
    for (mode, method), (frames, _) in runs.items():
        scores = score(frames, truth, pairs)
        rows.append([mode, method, scores["psnr"], scores["warp_error"], scores["colorfulness"]])
    truth_scores = score(truth, truth, pairs)
    rows.append(["-", "ground truth", float("inf"), truth_scores["warp_error"],
                 truth_scores["colorfulness"]])
    return rows


def speed_rows(colorizer: Colorizer, n_frames: int, size: tuple[int, int]) -> list[list]:
    truth = make_truth_frames(n_frames, size)
    gray = [luminance_only(frame) for frame in truth]
    rows = []
    run_classic(colorizer, gray[:2], truth[0], "propagate")  # warm-up: imports, allocations
    for mode, reference in (("propagate", truth[0]), ("exemplar", demo_reference(size))):
        _, per_frame = run_classic(colorizer, gray, reference, mode)
        rows.append([mode, f"{size[1]}x{size[0]}", per_frame])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", type=parse_size, default=(240, 320), help="HxW of the clip")
    parser.add_argument("--speed-size", type=parse_size, default=(576, 768))
    parser.add_argument("--speed-frames", type=int, default=12)
    parser.add_argument("--no-speed", action="store_true")
    args = parser.parse_args(argv)

    colorizer = Colorizer(engine="classic", device="cpu", precision="float32")
    print(f"torch threads: {torch.get_num_threads()}; clip {args.frames} frames "
          f"{args.size[1]}x{args.size[0]}, cut at frame {cut_index(args.frames)}\n")
    print("| mode | method | PSNR (dB) | warp error | colorfulness |")
    print("| --- | --- | ---: | ---: | ---: |")
    for mode, method, value, error, colour in quality_rows(colorizer, args.frames, args.size):
        print(f"| {mode} | {method} | {value:.2f} | {error:.2f} | {colour:.1f} |")
    if not args.no_speed:
        print("\n| mode | frame size | s/frame (colorize_frames, all stages) |")
        print("| --- | --- | ---: |")
        for mode, label, per_frame in speed_rows(colorizer, args.speed_frames, args.speed_size):
            print(f"| {mode} | {label} | {per_frame:.3f} |")


if __name__ == "__main__":
    main()
