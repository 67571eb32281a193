"""The device check: one command, a few minutes, everything the GPU path promises.

    python bench/gpu_check.py                       # CUDA (defaults sized to stay under 5 min)
    python bench/gpu_check.py --device cpu --fps-frames 3 --long-frames 12 --psnr-frames 3

1. **Faithfulness**: the devc engine in float32 (IEEE: TF32 off) on the device against the
   float64 golden arrays of the official code (tests/fixtures/golden_modules.npz, seeded
   weights), with GOLDEN.md's float32 tolerances: warped colours equal to the argmax's on
   >= 98% of positions, similarity within 1e-5, ab within 5e-3 (frame 0) and 8e-2 (frame 1,
   after the recurrence). Then float64 on the device within 1e-7 relative.
2. **Half precisions**: per-frame RGB PSNR of bf16 / fp16 (CPU: bf16 where native) against
   float32 over a short clip (``bench/precision.py`` does the same with timings).
3. **Speed**: fps end to end (decode, model, post-processing, encode, H.264 in and out) from a
   1080p file at the official preset (cover-crop to 432x768) and at the default preset
   (1080p out, chroma upsampled), per precision; peak GPU memory (torch's allocator) and RSS.
4. **Memory flat over a long run**: ``--long-frames`` frames through ``colorize_frames`` at
   the official size; GPU allocated memory and RSS sampled along the way.

Seeded random weights throughout (speed and memory are the real ones; PSNR is not
representative of the real checkpoints). Prints figures and PASS/FAIL for the tolerance
checks; exit 1 if a check fails.
"""

from __future__ import annotations

import argparse
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
    current_rss_bytes,
    format_bytes,
    machine_summary,
    markdown_table,
    peak_rss_bytes,
    reset_peak_rss,
    seeded,
    seeded_weights_dir,
    write_gray_clip,
    write_reference,
)

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "golden_modules.npz"
# GOLDEN.md: the official float32 run against the float64 golden (our CPU float32 test uses the
# same bounds): similarity <= 2.3e-6, ab <= 2.3e-3 / 4.0e-2; with margin as in the tests.
SIMILARITY_ATOL = 1e-5
AB_ATOL = (5e-3, 8e-2)  # frame 0, frame 1 (the recurrence amplifies float32 rounding)
ARGMAX_AGREEMENT = 0.98  # an argmax may flip on a near tie: a few 4x4 blocks at most
FLOAT64_REL = 1e-7  # float64 on a GPU: other summation orders only
SOURCE_1080P = (1080, 1920)


def golden_check(device: str) -> list[list[str]]:
    """Rows: (check, measured, bound, PASS/FAIL)."""
    from vidcolor.devices import configure_cuda
    from vidcolor.engines.devc.engine import DevcEngine
    from vidcolor.weights.convert import CHECKPOINTS, remap_official

    seeded_official_state_dict = seeded().seeded_official_state_dict
    golden = np.load(GOLDEN)
    configure_cuda(torch.device(device), allow_tf32=False)
    weights64 = {k: remap_official(k, seeded_official_state_dict(k)) for k in CHECKPOINTS}

    def run(dtype):
        engine = DevcEngine({k: {n: t.to(dtype) for n, t in v.items()} for k, v in weights64.items()},
                            device, dtype)
        ref = engine.prepare_reference(torch.from_numpy(golden["ref_lab_full"])[None])
        frames_l = torch.cat([torch.from_numpy(golden[f"frame{i}_lab_full"])[None, :1] for i in (0, 1)])
        corr = engine.correspond(frames_l, ref)
        state, outputs = engine.initial_state(ref, propagate=False), []
        for i in range(2):
            ab, state = engine.step(frames_l[i : i + 1], corr[i], state)
            outputs.append(ab[0].double().cpu().numpy())
        return corr, outputs

    rows = []
    corr, outputs = run(torch.float32)
    agree = np.isclose(corr.warped_ab[0].double().cpu().numpy(), golden["frame0_nonlocal_lab"][1:],
                       atol=1e-4).mean()
    rows.append(["float32: warp equal to the golden argmax's colours", f"{agree:.4f}",
                 f">= {ARGMAX_AGREEMENT}", agree >= ARGMAX_AGREEMENT])
    similarity = np.abs(corr.confidence[0].double().cpu().numpy() - golden["frame0_similarity_T1e-10"]).max()
    rows.append(["float32: similarity, max abs diff", f"{similarity:.2e}", f"<= {SIMILARITY_ATOL}",
                 similarity <= SIMILARITY_ATOL])
    for i, bound in enumerate(AB_ATOL):
        diff = np.abs(outputs[i] - golden[f"frame{i}_ab_pred_half"]).max()
        rows.append([f"float32: ab frame {i}, max abs diff", f"{diff:.2e}", f"<= {bound}", diff <= bound])
    _, outputs64 = run(torch.float64)
    for i in range(2):
        expected = golden[f"frame{i}_ab_pred_half"]
        rel = np.abs(outputs64[i] - expected).max() / np.abs(expected).max()
        rows.append([f"float64: ab frame {i}, max relative diff", f"{rel:.2e}", f"<= {FLOAT64_REL}",
                     rel <= FLOAT64_REL])
    return [[name, value, bound, "PASS" if ok else "FAIL"] for name, value, bound, ok in rows]


def half_precisions(device: str) -> list[str]:
    if device.startswith("cuda"):
        return ["bfloat16", "float16"]
    from vidcolor.devices import native_cpu_bf16

    return ["bfloat16"] if native_cpu_bf16() else []


def colorizer(precision: str, device: str, weights_dir: Path):
    from vidcolor import Colorizer

    return Colorizer(engine="devc", device=device, precision=precision, weights_dir=weights_dir)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def cuda_peak(device: str) -> int | None:
    return torch.cuda.max_memory_allocated() if device.startswith("cuda") else None


def reset_peaks(device: str) -> None:
    reset_peak_rss()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--fps-frames", type=int, default=120, help="frames of the 1080p clip")
    parser.add_argument("--psnr-frames", type=int, default=12)
    parser.add_argument("--long-frames", type=int, default=1000)
    parser.add_argument("--precisions", default=None, help="speed runs (default: float32 + halves)")
    args = parser.parse_args(argv)
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device here: run with --device cpu", file=sys.stderr)
        return 2
    from vidcolor import info

    print(f"# device check: {device}\n{machine_summary()}; {cpu_description()}; command: "
          f"`{command_line()}`")
    for found in info.find_devices():
        print(f"{found.name}: {found.description}; precisions {', '.join(found.precisions)}; "
              f"bfloat16 {found.bfloat16}")
    print()
    failed = False

    started = time.perf_counter()
    rows = golden_check(device)
    failed |= any(r[-1] == "FAIL" for r in rows)
    print(f"## 1. float32 / float64 on {device} against the official float64 golden "
          f"({time.perf_counter() - started:.0f} s)\n")
    print(markdown_table(["check", "measured", "bound", "result"], rows) + "\n")

    halves = half_precisions(device)
    precisions = args.precisions.split(",") if args.precisions else ["float32", *halves]
    with tempfile.TemporaryDirectory(prefix="vidcolor-gpu-check-") as tmp:
        tmp = Path(tmp)
        weights_dir = seeded_weights_dir(tmp / "weights")
        clip = write_gray_clip(tmp / "gray-1080p.mp4", max(args.fps_frames, args.psnr_frames),
                               SOURCE_1080P)
        ref = write_reference(tmp / "ref.png", SOURCE_1080P)
        models = {p: colorizer(p, device, weights_dir) for p in dict.fromkeys(["float32", *precisions, *halves])}

        started = time.perf_counter()
        outputs = {}
        for p in ["float32", *halves]:
            outputs[p] = list(models[p].colorize_frames(_frames(clip, args.psnr_frames), ref,
                                                        preset="official"))
        from vidcolor.eval.metrics import psnr

        rows = [[p, " ".join(f"{psnr(a, b):.1f}" for a, b in zip(outputs["float32"], outputs[p]))]
                for p in halves]
        print(f"## 2. half precisions against float32, official preset, per-frame RGB PSNR (dB), "
              f"{args.psnr_frames} frames ({time.perf_counter() - started:.0f} s)\n")
        print(markdown_table(["precision", "PSNR per frame, frame 0 first"], rows or [["(none here)", ""]]) + "\n")

        rows = []
        started = time.perf_counter()
        for preset in ("official", "default"):
            for p in precisions:
                model = models[p]
                model.colorize_video(clip, ref, tmp / "warm.mp4", preset=preset, max_frames=4,
                                     overwrite=True)
                reset_peaks(device)
                t = time.perf_counter()
                summary = model.colorize_video(clip, ref, tmp / f"out-{preset}-{p}.mp4",
                                               preset=preset, max_frames=args.fps_frames,
                                               overwrite=True)
                sync(device)
                seconds = time.perf_counter() - t
                rows.append([preset, p, summary.frames, f"{summary.frames / seconds:.2f}",
                             format_bytes(cuda_peak(device)) if cuda_peak(device) else "-",
                             format_bytes(peak_rss_bytes())])
        print(f"## 3. end to end from a 1080p H.264 file to H.264 ({time.perf_counter() - started:.0f} s)\n")
        print(markdown_table(["preset", "precision", "frames", "fps", "peak GPU memory", "peak RSS"], rows) + "\n")

        started = time.perf_counter()
        samples = _long_run(models[precisions[-1]], ref, args.long_frames, device)
        print(f"## 4. memory over {args.long_frames} frames, official size, {precisions[-1]} "
              f"({time.perf_counter() - started:.0f} s)\n")
        print(markdown_table(["frames done", "GPU allocated", "RSS"], samples))
    return 1 if failed else 0


def _frames(clip: Path, count: int):
    from vidcolor.io.reader import open_clip

    with open_clip(clip) as opened:
        for frame in opened.frames(max_frames=count):
            yield frame.rgb


def _long_run(model, ref: Path, count: int, device: str) -> list[list[str]]:
    """``count`` synthetic 432x768 frames (a moving gradient), memory sampled ~10 times."""
    rows, step = [], max(1, count // 10)
    height, width = 432, 768
    base = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)

    def frames():
        for k in range(count):
            gray = ((base + 3 * k) % 256).astype(np.uint8)
            yield np.repeat(gray[:, :, None], 3, axis=2)

    for done, _ in enumerate(model.colorize_frames(frames(), ref, preset="official"), start=1):
        if done % step == 0 or done == count:
            sync(device)
            gpu = torch.cuda.memory_allocated() if device.startswith("cuda") else None
            rows.append([str(done), format_bytes(gpu) if gpu else "-", format_bytes(current_rss_bytes())])
    return rows


if __name__ == "__main__":
    sys.exit(main())
