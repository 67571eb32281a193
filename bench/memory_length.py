"""Peak memory must not grow with video length: the same clip at 100 and at 1000 frames.

    python bench/memory_length.py                   # classic engine, 72x96 source
    python bench/memory_length.py --engine devc --device cuda --size 432x768

Each length runs ``Colorizer.colorize_video`` (decode, colorize, encode: the whole streaming
path) in its own subprocess, which reports its peak RSS (and CUDA peak). Nothing may hold all
frames, so the two peaks should agree within 5 %; the script prints their ratio and says
whether it is flat. ``--check`` turns "not flat" into exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    run_script_worker,
    command_line,
    cuda_peak_bytes,
    format_bytes,
    machine_summary,
    markdown_table,
    measure,
    parse_size,
    peak_rss_bytes,
    write_gray_clip,
    write_reference,
)

# The requirement: peak memory flat within 5 % from 100 to 1000 frames.
FLAT_TOLERANCE = 0.05
RESULT_PREFIX = "MEMORY_RESULT "


def run_worker(spec: dict) -> dict:
    from vidcolor import Colorizer

    weights_dir = None
    if spec["engine"] == "devc":
        from vidcolor.weights import cache

        if not cache.is_installed():
            from vidcolor.weights.convert import save_converted
            from tests.seeded_weights import seeded_converted

            weights_dir = Path(tempfile.mkdtemp(dir=spec["workdir"]))
            for kind, tensors in seeded_converted().items():
                save_converted(weights_dir, kind, tensors)
    colorizer = Colorizer(engine=spec["engine"], device=spec["device"],
                          weights_dir=weights_dir)
    size = tuple(spec["working_size"]) if spec["working_size"] else None
    dst = Path(spec["workdir"]) / f"out-{spec['frames']}.mp4"
    with measure() as run:
        summary = colorizer.colorize_video(spec["src"], spec["ref"], dst, preset=spec["preset"],
                                           size=size, overwrite=True)
    return {"frames": summary.frames, "seconds": run.seconds, "rss": peak_rss_bytes(),
            "cuda": cuda_peak_bytes(), "engine": colorizer.engine.name,
            "device": str(colorizer.device)}


def run_in_subprocess(spec: dict) -> dict:
    result = run_script_worker(__file__, spec, RESULT_PREFIX)
    if "error" in result:
        raise SystemExit(f"worker for {spec['frames']} frames failed ({result['error']})")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="classic")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--size", default="72x96", help="source size HxW")
    parser.add_argument("--working-size", default="same",
                        help="engine working size HxW, 'same' as the source (default: small, "
                        "so 1000 frames run in minutes) or 'preset' for the preset's own")
    parser.add_argument("--lengths", default="100,1000", help="frame counts, comma-separated")
    parser.add_argument("--check", action="store_true", help="exit 1 when not flat")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(RESULT_PREFIX + json.dumps(run_worker(json.loads(args.worker))), flush=True)
        return 0

    size = parse_size(args.size)
    working = {"same": list(size), "preset": None}.get(args.working_size)
    if args.working_size not in ("same", "preset"):
        working = list(parse_size(args.working_size))
    lengths = [int(n) for n in args.lengths.split(",")]
    results = []
    with tempfile.TemporaryDirectory(prefix="vidcolor-memory-") as tmp:
        ref = write_reference(Path(tmp) / "ref.png", size)
        for n_frames in lengths:
            src = write_gray_clip(Path(tmp) / f"gray-{n_frames}.mp4", n_frames, size)
            spec = {"engine": args.engine, "device": args.device, "preset": args.preset,
                    "working_size": working, "src": str(src), "ref": str(ref),
                    "frames": n_frames, "workdir": tmp}
            results.append(run_in_subprocess(spec))
            print(f"{n_frames} frames: peak RSS {format_bytes(results[-1]['rss'])}",
                  file=sys.stderr, flush=True)

    base = results[0]
    rows = [[r["engine"], r["device"], r["frames"], f"{r['seconds']:.1f}",
             format_bytes(r["rss"]), f"{r['rss'] / base['rss']:.3f}",
             format_bytes(r["cuda"]) if r["cuda"] else "-"] for r in results]
    print(f"`{command_line()}` ({machine_summary()})\n")
    print(markdown_table(["engine", "device", "frames", "seconds", "peak RSS",
                          f"RSS / {base['frames']} frames", "CUDA peak"], rows))
    worst = max(abs(r["rss"] / base["rss"] - 1.0) for r in results)
    if base["cuda"]:
        worst = max([worst] + [abs(r["cuda"] / base["cuda"] - 1.0) for r in results])
    flat = worst <= FLAT_TOLERANCE
    print(f"\npeak memory {'flat' if flat else 'NOT flat'}: largest change {100 * worst:.1f} % "
          f"(tolerance {100 * FLAT_TOLERANCE:.0f} %)")
    return 1 if args.check and not flat else 0


if __name__ == "__main__":
    sys.exit(main())
