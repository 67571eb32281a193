"""``python -m vidcolor.demo``: colorize a generated clip with the classic engine, offline.

What ``make demo`` runs on a fresh clone. It builds the ground-truth demo clip
(``vidcolor.demo.clip``: public-domain/CC0 photographs that scikit-image ships, with a tone as
audio track), colorizes its grayscale version in exemplar mode (reference: a wider photo of the
same scene) and in propagation mode (reference: the true colours of frame 0) through the public
``Colorizer`` API, and writes, into ``--out`` (``demo/``, git-ignored):

    input_gray.mp4            the black-and-white input (H.264 + AAC tone)
    truth.mp4                 the real colours, to score against (``vidcolor eval``)
    reference_photo.png       exemplar-mode reference
    reference_frame0.png      propagation-mode reference (a "hand-coloured" frame 0)
    exemplar.mp4, propagate.mp4                         the colorized clips, audio kept
    exemplar_side_by_side.mp4, propagate_side_by_side.mp4   input | output
    preview.png               input | exemplar | propagate | truth, three moments of the clip
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from vidcolor.demo.clip import (
    DEFAULT_SIZE,
    cut_index,
    demo_reference,
    make_truth_frames,
    write_demo_clip,
)
from vidcolor.errors import VidcolorError

DEFAULT_FRAMES = 48  # two seconds at 24 fps
PREVIEW_GAP = 4  # pixels of white between preview panels


def _decode_frames(path: Path, indices: set[int]) -> dict[int, np.ndarray]:
    import av

    wanted = {}
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index in indices:
                wanted[index] = frame.to_ndarray(format="rgb24")
    return wanted


def _save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(rgb).save(path)


def write_preview(path: Path, columns: list[Path], truth: list[np.ndarray],
                  indices: list[int]) -> None:
    """One row per frame index: each video in ``columns``, then the truth, side by side."""
    decoded = [_decode_frames(video, set(indices)) for video in columns]
    height, width = truth[0].shape[:2]
    gap_column = np.full((height, PREVIEW_GAP, 3), 255, np.uint8)
    rows = []
    for index in indices:
        panels = [frames[index] for frames in decoded] + [truth[index]]
        row = [part for panel in panels for part in (panel, gap_column)][:-1]
        rows.append(np.concatenate(row, axis=1))
        rows.append(np.full((PREVIEW_GAP, rows[-1].shape[1], 3), 255, np.uint8))
    _save_png(path, np.concatenate(rows[:-1], axis=0))


def run_demo(out: Path, n_frames: int = DEFAULT_FRAMES,
             size: tuple[int, int] = DEFAULT_SIZE, log=print) -> dict[str, float]:
    """Build, colorize and preview the demo into ``out``; returns seconds per stage."""
    from vidcolor import Colorizer

    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    gray_clip = out / "input_gray.mp4"
    info = write_demo_clip(gray_clip, n_frames, size, with_audio=True, grayscale=True)
    write_demo_clip(out / "truth.mp4", n_frames, size, with_audio=True, grayscale=False)
    truth = make_truth_frames(n_frames, size)
    references = {"exemplar": out / "reference_photo.png",
                  "propagate": out / "reference_frame0.png"}
    _save_png(references["exemplar"], demo_reference(size))
    _save_png(references["propagate"], truth[0])
    seconds["build clip"] = time.perf_counter() - started

    colorizer = Colorizer(engine="classic", device="cpu")
    outputs = []
    for mode, reference in references.items():
        t = time.perf_counter()
        dst = out / f"{mode}.mp4"
        colorizer.colorize_video(gray_clip, reference, dst, mode=mode, overwrite=True,
                                 compare=out / f"{mode}_side_by_side.mp4")
        seconds[f"colorize ({mode})"] = time.perf_counter() - t
        outputs.append(dst)

    t = time.perf_counter()
    moments = sorted({0, info.cut_index - 1, min(n_frames - 1, info.cut_index + 2)})
    write_preview(out / "preview.png", [gray_clip] + outputs, truth, moments)
    seconds["preview"] = time.perf_counter() - t
    seconds["total"] = time.perf_counter() - started
    log(f"demo written to {out.resolve()}/ ({n_frames} frames {size[1]}x{size[0]}, hard cut "
        f"at frame {cut_index(n_frames)}):")
    for name in ("input_gray.mp4", "truth.mp4", "exemplar.mp4", "propagate.mp4",
                 "exemplar_side_by_side.mp4", "propagate_side_by_side.mp4", "preview.png"):
        log(f"  {out / name}")
    log("timings: " + ", ".join(f"{name} {value:.1f} s" for name, value in seconds.items()))
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vidcolor.demo",
                                     description="Colorize a generated demo clip (offline).")
    parser.add_argument("--out", type=Path, default=Path("demo"), help="output folder")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--size", default=f"{DEFAULT_SIZE[0]}x{DEFAULT_SIZE[1]}",
                        help="HEIGHTxWIDTH of the clip, even numbers")
    args = parser.parse_args(argv)
    try:
        height, width = (int(part) for part in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must look like 240x320, got {args.size!r}")
    try:
        run_demo(args.out, args.frames, (height, width))
    except VidcolorError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
