"""Which optical flow the classic engine carries colours with: accuracy and time (issue 16).

    .venv/bin/python bench/flow_choice.py [--repeats 3] [--footage /work/data/footage]

Accuracy 1, known motion: a 768x576 crop of scikit-image's astronaut under a 2 % zoom plus a
(7, 4) px shift, and the same with a (24, -16) px jump; mean endpoint error against the exact
affine flow over the interior. Accuracy 2, real footage: the mean absolute luminance error
of the moving frame warped onto the reference frame (photometric residual) over consecutive
pairs of ``box.mp4`` resized to 768x576 (skipped when the footage is absent). Time: median
seconds per flow (one direction) at 768x576 on this machine's torch/OpenCV threads.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from skimage import data, transform
from skimage.color import rgb2gray

from vidcolor.motion.flow import dis_flow, estimate_flow, farneback_flow, warp

SIZE = (576, 768)
METHODS = {
    "TV-L1, long side 192 (current)": lambda a, b: estimate_flow(a, b),
    "TV-L1, long side 384": lambda a, b: estimate_flow(a, b, max_side=384),
    "DIS ultrafast": lambda a, b: dis_flow(a, b, "ultrafast"),
    "DIS fast": lambda a, b: dis_flow(a, b, "fast"),
    "DIS medium": lambda a, b: dis_flow(a, b, "medium"),
    "Farneback": farneback_flow,
}


def affine_pair(shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reference, moving, exact flow): moving[p + flow(p)] = reference[p]."""
    image = rgb2gray(data.astronaut()).astype(np.float32)
    image = transform.resize(image, (SIZE[0] + 64, SIZE[1] + 64 * SIZE[1] // SIZE[0]))
    image = image[:SIZE[0], :SIZE[1]].astype(np.float32)
    rows, cols = np.mgrid[: SIZE[0], : SIZE[1]].astype(np.float32)
    centre = np.array([SIZE[0] / 2, SIZE[1] / 2], np.float32)
    zoom = 1.02
    # moving(q) = reference(centre + (q - shift - centre) / zoom): flow(p) = (zoom-1)(p-c)+shift
    flow = np.stack([(zoom - 1) * (rows - centre[0]) + shift[0],
                     (zoom - 1) * (cols - centre[1]) + shift[1]])
    inverse = np.stack([centre[0] + (rows - shift[0] - centre[0]) / zoom,
                        centre[1] + (cols - shift[1] - centre[1]) / zoom])
    moving = transform.warp(image, inverse, order=3, mode="edge").astype(np.float32)
    return image, moving, flow


def median_time(method, a, b, repeats: int) -> tuple[float, np.ndarray]:
    times, flow = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        flow = method(a, b)
        times.append(time.perf_counter() - start)
    return float(np.median(times)), flow


def footage_pairs(footage: Path, count: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    import av
    import torch

    frames = []
    with av.open(str(footage / "box.mp4")) as container:
        for frame in container.decode(video=0):
            gray = torch.from_numpy(frame.to_ndarray(format="gray").astype(np.float32) / 255)
            gray = torch.nn.functional.interpolate(gray[None, None], size=SIZE, mode="bilinear",
                                                   align_corners=False)[0, 0].numpy()
            frames.append(gray)
            if len(frames) == count + 1:
                break
    return [(frames[t], frames[t - 1]) for t in range(1, len(frames))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--footage", type=Path, default=Path("/work/data/footage"))
    args = parser.parse_args()
    small = affine_pair((7.0, 4.0))
    large = affine_pair((24.0, -16.0))
    pairs = footage_pairs(args.footage) if (args.footage / "box.mp4").exists() else []
    print("| flow (768x576) | time per flow | EPE, zoom + (7, 4) px | EPE, zoom + (24, -16) px "
          "| footage residual |")
    print("| --- | ---: | ---: | ---: | ---: |")
    interior = (slice(None), slice(32, -32), slice(32, -32))
    for name, method in METHODS.items():
        seconds, flow = median_time(method, small[0], small[1], args.repeats)
        epe_small = np.sqrt(((flow - small[2]) ** 2).sum(0))[interior[1:]].mean()
        flow = method(large[0], large[1])
        epe_large = np.sqrt(((flow - large[2]) ** 2).sum(0))[interior[1:]].mean()
        residual = np.mean([np.abs(warp(b, method(a, b)) - a)[interior[1:]].mean()
                            for a, b in pairs]) if pairs else float("nan")
        print(f"| {name} | {seconds * 1e3:.0f} ms | {epe_small:.2f} px | {epe_large:.2f} px "
              f"| {residual:.4f} |", flush=True)


if __name__ == "__main__":
    main()
