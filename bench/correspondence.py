"""Time and peak memory of the correspondence warp: dense N x N (official) vs ours.

    python bench/correspondence.py                       # official size and 2x, 2 threads
    python bench/correspondence.py --sizes 432x768 --repeats 5

The input is what WarpNet's correlation sees: 256-channel frame and reference embeddings on the
feature grid (working size / 8: 54x96 at 432x768, N = 5184; 108x192 at 2x, N = 20736), centred
and L2-normalised, plus the 4x4-pooled reference Lab. Variants:

* ``dense``: the official formulation, ``f = theta^T phi`` (N x N), its row max (the
  similarity), ``softmax(f / T)`` and the product with the colours; no autograd.
* ``dense+graph``: the same with autograd recording, as the official code runs it
  (``joint_training=True``): everything stays alive while the output does. Official size only
  unless ``--graph-at-2x``.
* ``ours``: ``chunked_warp``, chunked max / argmax at T = 1e-10 (exact, O(N x chunk) memory).
* ``ours-soft``: ``chunked_warp`` at T = 0.01, fused attention + chunked max (the training
  temperature; for comparison).

Memory is the first full-size call in a fresh subprocess, so its peak RSS (Linux ``VmHWM``
growth over the process's state just before the call) is its own; time is the best of that
call and three warm ones. ``--repeats`` processes per variant: median peak, best time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    command_line,
    format_bytes,
    machine_summary,
    markdown_table,
    parse_size,
    peak_rss_bytes,
    reset_peak_rss,
)

EMBEDDING_CHANNELS = 256  # WarpNet's theta / phi width
FEATURE_STRIDE = 8  # feature grid = working size / 2 (network) / 4 (correspondence)
RESULT_PREFIX = "CORRESPONDENCE_RESULT "
INFERENCE_TEMPERATURE = 1e-10
TRAINING_TEMPERATURE = 0.01
TIMED_CALLS = 3  # after the memory call, in the same process


def _inputs(grid: tuple[int, int], seed: int = 0):
    import torch

    from vidcolor.engines.devc.correspondence import ReferenceEmbedding, correlation_embedding

    generator = torch.Generator().manual_seed(seed)
    frames = correlation_embedding(torch.randn(1, EMBEDDING_CHANNELS, *grid, generator=generator))
    phi = correlation_embedding(torch.randn(1, EMBEDDING_CHANNELS, *grid, generator=generator))[0]
    colors = torch.randn(3, grid[0] * grid[1], generator=generator) * 40
    return frames, ReferenceEmbedding(phi, colors, grid)


def run_child(variant: str, grid: tuple[int, int], threads: int) -> dict:
    """One variant in this fresh process: peak RSS growth of its first call, best time of all.

    Later calls in the same process reuse memory the allocator kept from the first, so only
    the first call after a small warm-up says how much the computation needs; the time comes
    from warm calls.
    """
    import torch

    from vidcolor.engines.devc.correspondence import chunked_warp, dense_warp

    torch.set_num_threads(threads)
    frames, reference = _inputs(grid)
    small_frames, small_reference = _inputs((6, 8))
    calls = {
        "dense": lambda f, r: dense_warp(f, r, INFERENCE_TEMPERATURE),
        "dense+graph": lambda f, r: dense_warp(f.requires_grad_(True), r, INFERENCE_TEMPERATURE),
        "ours": lambda f, r: chunked_warp(f, r, INFERENCE_TEMPERATURE),
        "ours-soft": lambda f, r: chunked_warp(f, r, TRAINING_TEMPERATURE),
    }
    call = calls[variant]
    context = torch.enable_grad() if variant == "dense+graph" else torch.inference_mode()
    with context:
        call(small_frames.clone(), small_reference)  # load kernels, start thread pools
        frames_in = frames.clone()
        reset_peak_rss()
        base = peak_rss_bytes()
        start = time.perf_counter()
        result = call(frames_in, reference)
        seconds = time.perf_counter() - start
        peak = peak_rss_bytes() - base  # measured while the result (and any graph) lives
        del result
        for _ in range(TIMED_CALLS):  # warm calls for the time
            frames_in = frames.clone()
            start = time.perf_counter()
            result = call(frames_in, reference)
            seconds = min(seconds, time.perf_counter() - start)
            del result
    return {"variant": variant, "grid": list(grid), "seconds": seconds, "peak_bytes": peak}


def spawn(variant: str, grid: tuple[int, int], runs: int, threads: int) -> dict | None:
    """``runs`` fresh processes: the best time and the median peak memory."""
    results = []
    for _ in range(runs):
        command = [sys.executable, __file__, "--child", variant, "--grid", f"{grid[0]}x{grid[1]}",
                   "--threads", str(threads)]
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        lines = [l for l in completed.stdout.splitlines() if l.startswith(RESULT_PREFIX)]
        if not lines:
            tail = (completed.stderr or completed.stdout).strip().splitlines()[-1:] or ["no output"]
            print(f"{variant} at grid {grid}: failed ({tail[0]})", file=sys.stderr)
            return None
        results.append(json.loads(lines[0][len(RESULT_PREFIX):]))
    return {"variant": variant, "grid": list(grid), "seconds": min(r["seconds"] for r in results),
            "peak_bytes": int(statistics.median(r["peak_bytes"] for r in results))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="432x768,864x1536", help="working sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per variant")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--graph-at-2x", action="store_true", help="also dense+graph beyond 432x768")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--grid", type=parse_size, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = run_child(args.child, args.grid, args.threads)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return

    print(f"# correspondence warp: dense N x N vs ours\n{machine_summary()} (children use "
          f"{args.threads} threads); command: `{command_line()}`\n")
    rows = []
    for size in [parse_size(s) for s in args.sizes.split(",")]:
        grid = (size[0] // FEATURE_STRIDE, size[1] // FEATURE_STRIDE)
        variants = ["dense", "ours", "ours-soft"]
        if size[0] * size[1] <= 432 * 768 or args.graph_at_2x:
            variants.insert(1, "dense+graph")
        results = {v: spawn(v, grid, args.repeats, args.threads) for v in variants}
        dense = results.get("dense")
        for variant, result in results.items():
            if result is None:
                rows.append([f"{size[0]}x{size[1]}", grid[0] * grid[1], variant, "failed", "", "", ""])
                continue
            speed = f"{dense['seconds'] / result['seconds']:.2f}x" if dense else ""
            memory = (f"1/{dense['peak_bytes'] / result['peak_bytes']:.0f}"
                      if dense and result["peak_bytes"] > 0 else "")
            rows.append([f"{size[0]}x{size[1]}", grid[0] * grid[1], variant, f"{result['seconds']:.3f} s",
                         format_bytes(result["peak_bytes"]), speed, memory])
    print(markdown_table(["working size", "N", "variant", "time", "peak memory", "speed vs dense",
                          "memory vs dense"], rows))


if __name__ == "__main__":
    main()
