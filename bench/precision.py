"""Speed and output difference of the half precisions against float32, over a clip.

    python bench/precision.py                                  # CPU, official preset, 6 frames
    python bench/precision.py --frames 12 --repeats 3 --preset default
    python bench/precision.py --weights-dir ~/.cache/vidcolor/devc   # the real checkpoints
    python bench/precision.py --device cuda --precisions float32,tf32,bfloat16,float16
    python bench/precision.py --layouts       # each network alone: float32 / bf16 NCHW / bf16 NHWC

Each precision colorizes the same clip through ``Colorizer.colorize_video`` (what the CLI runs:
decode, engine, post-processing, encode), written losslessly (FFV1) so the comparison sees the
model's difference, not the encoder's. Runs are interleaved (float32, bf16, float32, bf16, ...)
so load from other processes hits all of them alike; the fastest of ``--repeats`` is reported
with the median, as wall seconds per frame and CPU seconds per frame (the process's CPU time,
less sensitive to a shared machine's load). ``tf32`` is float32 with TF32 matmuls and
convolutions allowed (CUDA only). Per-frame RGB PSNR against the float32 output shows whether
the difference grows through the recurrence. Without ``--weights-dir`` the devc engine runs the
seeded random weights: their speed is the real one, their differences are not (random weights
amplify rounding; nobody here holds the real checkpoints). Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.common import (  # noqa: E402
    command_line,
    cpu_description,
    machine_summary,
    markdown_table,
    parse_size,
    seeded,
    seeded_weights_dir,
    write_gray_clip,
    write_reference,
)

# The official sample clips' frame size (REFERENCE.md §1): the official preset cover-crops it.
DEFAULT_SOURCE = (720, 1280)


def build(precision: str, device: str, weights_dir: Path):
    """A devc Colorizer; 'tf32' is float32 (TF32 is switched on per run by ``allow``)."""
    from vidcolor import Colorizer

    return Colorizer(engine="devc", device=device,
                     precision="float32" if precision == "tf32" else precision,
                     weights_dir=weights_dir)


def allow(precision: str, colorizer) -> None:
    """TF32 is a global switch: set it for this run only."""
    from vidcolor.devices import configure_cuda

    configure_cuda(colorizer.device, allow_tf32=precision == "tf32")


def decode(path: Path) -> list[np.ndarray]:
    from vidcolor.io.reader import open_clip

    with open_clip(path) as clip:
        return [frame.rgb for frame in clip.frames()]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    from vidcolor.eval.metrics import psnr as rgb_psnr

    return rgb_psnr(a, b)


def network_layouts(rounds: int) -> None:
    """Each devc network alone at the official network size (216x384): float32 as the engine
    runs it, bf16 in NCHW, bf16 in channels_last; CPU seconds, best of ``rounds``, interleaved."""
    from vidcolor.engines.devc import engine as devc

    weights = seeded().seeded_converted()
    every = devc.CPU_HALF_CHANNELS_LAST
    variants = {}
    for name, layouts, half in (("float32", (), None), ("bf16 NCHW", (), torch.bfloat16),
                                ("bf16 channels_last", every, torch.bfloat16)):
        devc.CPU_HALF_CHANNELS_LAST = layouts
        variants[name] = (devc.DevcEngine(weights, "cpu", torch.float32, autocast_dtype=half), layouts)
    devc.CPU_HALF_CHANNELS_LAST = every
    generator = torch.Generator().manual_seed(0)
    rgb = torch.randn(1, 3, 216, 384, generator=generator) * 50
    features = [torch.randn(1, c, h, w, generator=generator)
                for c, h, w in ((128, 108, 192), (256, 54, 96), (512, 27, 48), (512, 13, 24))]
    colornet_input = torch.randn(1, 7, 216, 384, generator=generator)
    best: dict[tuple[str, str], float] = {}
    with torch.inference_mode():
        for _ in range(rounds + 1):  # the first round warms up
            for name, (engine, layouts) in variants.items():
                devc.CPU_HALF_CHANNELS_LAST = layouts
                for network, run in (
                        ("VGG to relu5_2", lambda: engine.vgg(engine._network_input(rgb, "vgg"))),
                        ("WarpNet frame side", lambda: engine.correspondence.embed_frames(
                            engine._warpnet_input(features))),
                        ("ColorVidNet", lambda: engine.colorization(
                            engine._network_input(colornet_input, "colorization")))):
                    started = time.process_time()
                    run()
                    key = (network, name)
                    best[key] = min(best.get(key, float("inf")), time.process_time() - started)
    devc.CPU_HALF_CHANNELS_LAST = every
    print(f"# devc networks at 216x384, CPU seconds, best of {rounds}\n{machine_summary()}; "
          f"{cpu_description()}; command: `{command_line()}`\n")
    networks = dict.fromkeys(k[0] for k in best)
    rows = [[n, *(f"{best[(n, v)]:.3f}" for v in variants),
             f"{best[(n, 'float32')] / best[(n, 'bf16 channels_last')]:.2f}x"] for n in networks]
    print(markdown_table(["network", *variants, "float32 / bf16 channels_last"], rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default=None,
                        help="comma-separated; default float32,bfloat16 (CPU) or "
                             "float32,tf32,bfloat16,float16 (CUDA)")
    parser.add_argument("--preset", default="official")
    parser.add_argument("--source", type=parse_size, default=DEFAULT_SOURCE, help="clip size HxW")
    parser.add_argument("--clip", type=Path, help="a clip of your own instead of the synthetic one")
    parser.add_argument("--ref", type=Path, help="its reference image (with --clip)")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--weights-dir", type=Path, help="converted real checkpoints")
    parser.add_argument("--layouts", action="store_true",
                        help="only time each network alone: float32, bf16 NCHW, bf16 channels_last")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.layouts:
        network_layouts(args.repeats)
        return 0
    on_cuda = args.device.startswith("cuda")
    precisions = (args.precisions or ("float32,tf32,bfloat16,float16" if on_cuda
                                      else "float32,bfloat16")).split(",")

    with tempfile.TemporaryDirectory(prefix="vidcolor-precision-") as tmp:
        tmp = Path(tmp)
        weights = "real checkpoints" if args.weights_dir else "seeded random weights"
        weights_dir = args.weights_dir or seeded_weights_dir(tmp / "weights")
        src = args.clip or write_gray_clip(tmp / "gray.mp4", args.frames, args.source)
        ref = args.ref or write_reference(tmp / "ref.png", args.source)
        colorizers = {p: build(p, args.device, weights_dir) for p in precisions}
        wall: dict[str, list[float]] = {p: [] for p in precisions}
        cpu: dict[str, list[float]] = {p: [] for p in precisions}
        outputs: dict[str, Path] = {}
        for p, colorizer in colorizers.items():  # warm-up: kernels chosen, caches filled
            allow(p, colorizer)
            colorizer.colorize_video(src, ref, tmp / "warm.mkv", preset=args.preset, max_frames=2,
                                     codec="ffv1", overwrite=True)
        for _ in range(args.repeats):
            for p, colorizer in colorizers.items():
                allow(p, colorizer)
                outputs[p] = tmp / f"out-{p}.mkv"
                started_wall, started_cpu = time.perf_counter(), time.process_time()
                summary = colorizer.colorize_video(src, ref, outputs[p], preset=args.preset,
                                                   max_frames=args.frames, codec="ffv1",
                                                   overwrite=True)
                if on_cuda:
                    torch.cuda.synchronize()
                wall[p].append((time.perf_counter() - started_wall) / summary.frames)
                cpu[p].append((time.process_time() - started_cpu) / summary.frames)
        decoded = {p: decode(path) for p, path in outputs.items()}

    base = precisions[0]
    print(f"# {args.preset} preset, devc engine ({weights}), {args.device}, "
          f"{len(decoded[base])} frames of {args.source[0]}x{args.source[1]}")
    print(f"{machine_summary()}; {cpu_description()}; command: `{command_line()}`")
    print(f"{args.repeats} interleaved run(s) per precision after a warm-up: best (median)\n")
    rows = []
    for p in precisions:
        frame_psnr = [psnr(a, b) for a, b in zip(decoded[base], decoded[p])]
        finite = [v for v in frame_psnr if np.isfinite(v)]
        rows.append([
            p, f"{min(wall[p]):.3f} ({statistics.median(wall[p]):.3f})",
            f"{min(cpu[p]):.3f} ({statistics.median(cpu[p]):.3f})",
            f"{min(wall[base]) / min(wall[p]):.2f}x", f"{min(cpu[base]) / min(cpu[p]):.2f}x",
            "identical" if p == base else (f"{statistics.mean(finite):.1f}" if finite else "identical"),
            "" if p == base else " ".join("inf" if not np.isfinite(v) else f"{v:.1f}" for v in frame_psnr),
        ])
    print(markdown_table(["precision", "wall s/frame", "CPU s/frame", f"speed vs {base} (wall)",
                          f"speed vs {base} (CPU)", f"mean RGB PSNR vs {base} (dB)",
                          "per-frame PSNR (dB), frame 0 first"], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
