"""Issue 14's "Done when" for `vidcolor train`, run as a user runs it, on real clips.

    python bench/train_check.py --footage box.mp4 cup.mp4          # the issue's check (hours on 2 cores)
    python bench/train_check.py --footage box.mp4 cup.mp4 --crop 64x128 --steps 6 --precision float64

1. Data: the first ``--frames`` frames of every ``--footage`` clip, plus a third clip cut from
   the middle of the last one, re-encoded at their own size (H.264) into WORK/data.
2. Weights: the installed ones, else the tests' seeded stand-ins (tests/seeded_weights.py: the
   released layout, so the same cost) installed into WORK/home through `download-weights`'s path.
3. ``vidcolor train --steps N --batch-size B --device cpu --seed 7`` into WORK/one: the six
   losses of every log line, the mean total loss over the first and the last 10 steps, steps/s
   (steps over the summed per-step seconds of log.jsonl: the prepare step is left out).
4. The same under ``torchrun --standalone --nproc-per-node 2`` into WORK/ddp; N/2 steps then
   ``--resume --steps N`` into WORK/resumed; and, as the noise floor of the comparison, one
   process again with OMP_NUM_THREADS=2 or more (WORK/threads; training's default is one thread
   per process): only the order of float reductions differs from WORK/one there, which shows
   what the bit-for-bit equality of one process and torchrun protects against.
5. ``vidcolor colorize GRAY --ref REF --engine devc --weights-dir WORK/one/final``.

Weights are compared per tensor of RUN/final: max |a - b| / max |b| (the issue's "max relative
difference"), and ||a - b|| / ||b - init|| (the difference against how far training moved the
tensor); each line gives the worst tensor. Every run but the first reuses WORK/one's data cache
(the same sources, so the same cache keys). Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import command_line, cpu_description, machine_summary  # noqa: E402

LOSS_WINDOW = 10  # the issue: mean total loss over the first and the last 10 steps
CONTROL_THREADS = 2  # at least: the control run computes with more threads than training's 1


def cut_clip(source: Path, target: Path, start: int, count: int) -> int:
    """Frames [start, start + count) of ``source`` re-encoded as H.264 at the same size."""
    import av

    written = 0
    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        stream = reader.streams.video[0]
        out = writer.add_stream("libx264", rate=25)
        out.width, out.height, out.pix_fmt = stream.width, stream.height, "yuv420p"
        out.options = {"crf": "18"}
        for index, frame in enumerate(reader.decode(stream)):
            if index < start:
                continue
            if written == count:
                break
            fresh = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")  # no source pts
            writer.mux(out.encode(fresh.reformat(format="yuv420p")))
            written += 1
        writer.mux(out.encode(None))
    return written


def frame_count(path: Path) -> int:
    import av

    with av.open(str(path)) as reader:
        return sum(1 for _ in reader.decode(video=0))


def make_data(footage: list[Path], folder: Path, frames: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for path in footage:
        clips.append(folder / path.name)
        cut_clip(path, clips[-1], 0, frames)
    last = footage[-1]
    middle = max(0, frame_count(last) // 2)
    clips.append(folder / f"{last.stem}_middle{last.suffix}")
    cut_clip(last, clips[-1], middle, frames)
    return clips


def ensure_weights(home: Path) -> dict:
    """Environment for the subprocesses: the installed weights, else seeded ones in ``home``."""
    from vidcolor.weights import cache

    env = dict(os.environ)
    if cache.is_installed():
        return env
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from seeded_weights import write_seeded_release_zip

    from vidcolor.weights import download

    env["VIDCOLOR_HOME"] = os.environ["VIDCOLOR_HOME"] = str(home)
    if not cache.is_installed():
        home.mkdir(parents=True, exist_ok=True)
        download.install(from_file=write_seeded_release_zip(home / "seeded_release.zip"))
    print(f"weights: the seeded stand-ins (no installed release), in {home}")
    return env


def train(args, run: Path, env: dict, *extra: str, steps: int | None = None, torchrun: bool = False,
          cache_from: Path | None = None) -> float:
    """One `vidcolor train` run; returns its wall seconds."""
    if cache_from is not None and not (run / "cache").exists():
        run.mkdir(parents=True, exist_ok=True)
        shutil.copytree(cache_from / "cache", run / "cache")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"] \
        if torchrun else [sys.executable]
    command = [*launcher, "-m", "vidcolor", "train", "--data", str(args.work / "data"), "--out", str(run),
               "--steps", str(steps or args.steps), "--batch-size", str(args.batch_size), "--device", "cpu",
               "--seed", "7", "--crop", args.crop, "--precision", args.precision, "-q", *extra]
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - began


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


def final_weights(run: Path) -> dict:
    from vidcolor.weights.convert import load_converted

    return {f"{kind}/{name}": value.double() for kind, tensors in load_converted(run / "final").items()
            for name, value in tensors.items()}


def compare(a: dict, b: dict, init: dict) -> tuple[float, str, float, str]:
    """(worst max|a-b|/max|b|, its tensor, worst ||a-b||/||b-init||, its tensor) over moved tensors."""
    worst_max, worst_moved = (0.0, ""), (0.0, "")
    for key, reference in b.items():
        difference = (a[key] - reference).abs()
        relative = (difference.max() / reference.abs().max().clamp_min(1e-30)).item()
        worst_max = max(worst_max, (relative, key))
        moved = (reference - init[key]).norm()
        if moved > 0:
            worst_moved = max(worst_moved, ((difference.norm() / moved).item(), key))
    return (*worst_max, *worst_moved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--footage", type=Path, nargs="+", required=True, help="color clips (the last is cut twice)")
    parser.add_argument("--frames", type=int, default=50, help="frames per clip")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--crop", default="216x384")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--work", type=Path, default=Path("/tmp/train_check"))
    parser.add_argument("--skip", default="", help="comma list of ddp,resume,threads,colorize")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    print(f"# {command_line()}\n# {machine_summary()}; {cpu_description()}")
    if args.work.exists():
        shutil.rmtree(args.work)
    clips = make_data(args.footage, args.work / "data", args.frames)
    print("data: " + ", ".join(f"{c.name} ({frame_count(c)} frames)" for c in clips))
    env = ensure_weights(args.work / "home")
    from vidcolor.weights import cache

    init = {f"{kind}/{name}": value.double() for kind, tensors in
            __import__("vidcolor.weights.convert", fromlist=["load_converted"]).load_converted(
                cache.installed_dir()).items() for name, value in tensors.items()}

    one = args.work / "one"
    wall = train(args, one, env)
    log = read_log(one)
    totals = [line["loss"] for line in log]
    present = all(set(line["losses"]) == {"perceptual", "contextual", "smoothness", "adversarial", "temporal", "l1"}
                  for line in log)
    compute = sum(line["seconds"] for line in log)
    first, last = (sum(v) / len(v) for v in (totals[:LOSS_WINDOW], totals[-LOSS_WINDOW:]))
    print(f"one process: {len(log)} steps, six losses in every line: {present}; mean total loss first "
          f"{LOSS_WINDOW} {first:.4g}, last {LOSS_WINDOW} {last:.4g} (ratio {last / first:.3f}); "
          f"{len(log) / compute:.4f} steps/s ({compute:.0f} s of steps, {wall:.0f} s wall with the prepare step)")
    final = final_weights(one)
    runs = {}
    if "ddp" not in skip:
        train(args, args.work / "ddp", env, torchrun=True, cache_from=one)
        runs["torchrun 2 processes"] = args.work / "ddp"
    if "resume" not in skip:
        resumed = args.work / "resumed"
        train(args, resumed, env, steps=args.steps // 2, cache_from=one)
        train(args, resumed, env, "--resume")
        runs[f"{args.steps // 2} steps + --resume"] = resumed
    if "threads" not in skip:
        import torch

        threads = max(CONTROL_THREADS, torch.get_num_threads())  # training's own default is 1 thread
        train(args, args.work / "threads", dict(env, OMP_NUM_THREADS=str(threads)), cache_from=one)
        runs[f"one process, {threads} thread(s) (reduction order only)"] = args.work / "threads"
    for label, run in runs.items():
        rel, key, moved, moved_key = compare(final_weights(run), final, init)
        print(f"{label} vs one process: max|a-b|/max|b| {rel:.3g} ({key}); ||a-b||/||b-init|| {moved:.3g} "
              f"({moved_key})")
    if "colorize" not in skip:
        colorize(args.work, clips[0], one / "final", env)


def colorize(work: Path, clip: Path, weights: Path, env: dict) -> None:
    """A gray copy of ``clip``'s first frames and its first frame as reference, through RUN/final."""
    import av
    import numpy as np
    from PIL import Image

    gray, reference, output = work / "gray.mp4", work / "reference.png", work / "colorized.mp4"
    with av.open(str(clip)) as reader, av.open(str(gray), "w") as writer:
        stream = writer.add_stream("libx264", rate=25)
        for index, frame in enumerate(reader.decode(video=0)):
            rgb = frame.to_ndarray(format="rgb24")
            if index == 0:
                Image.fromarray(rgb).save(reference)
                stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], "yuv420p"
            luma = np.asarray(Image.fromarray(rgb).convert("L"))
            writer.mux(stream.encode(av.VideoFrame.from_ndarray(np.repeat(luma[..., None], 3, 2), format="rgb24")
                                     .reformat(format="yuv420p")))
            if index == 7:
                break
        writer.mux(stream.encode(None))
    command = [sys.executable, "-m", "vidcolor", "colorize", str(gray), "--ref", str(reference), "--engine", "devc",
               "--weights-dir", str(weights), "--device", "cpu", "-o", str(output), "-q"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    frames = frame_count(output) if done.returncode == 0 else 0
    print(f"colorize --engine devc --weights-dir {weights}: exit {done.returncode}, {frames} frames decoded "
          f"from {output.name}" + (f"\n{done.stderr[-2000:]}" if done.returncode else ""))


if __name__ == "__main__":
    main()
