"""Frames per second and peak memory of each engine and preset, with and without video I/O.

    python bench/throughput.py          # classic + devc, both presets, 432x768, CPU (+ CUDA)
    python bench/throughput.py --engines classic --sizes 240x320,432x768 --frames 16

For every (device, engine, preset, source size) a fresh subprocess (clean peak memory):
1. builds a ``Colorizer`` (devc: the installed weights, else the tests' seeded weights, same
   layout and cost), warms up on two frames;
2. *with I/O*: ``colorize_video`` on a grey H.264 clip -> H.264 file (decode + encode timed);
3. *without I/O*: ``colorize_frames`` on the same frames decoded beforehand, outputs dropped.
fps = frames / wall time of the run, reference preparation included (it is part of every clip);
with ``--repeats N`` the fastest of N runs. "with / without" is the ratio of the two speeds
(1.0 = decoding and encoding cost nothing on top of the model).
Peak RSS is the process high-water mark during that run (the pre-decoded frames count in the
"without I/O" figure); CUDA peak is torch's allocator peak. Figures only, no assertions.
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
    cuda_available,
    cuda_peak_bytes,
    format_bytes,
    format_ratio,
    machine_summary,
    markdown_table,
    measure,
    parse_size,
    peak_rss_bytes,
    reset_cuda_peak,
    reset_peak_rss,
    write_gray_clip,
    write_reference,
)

WARMUP_FRAMES = 2
RESULT_PREFIX = "THROUGHPUT_RESULT "


def _seeded_weights_dir(directory: Path) -> Path:
    """The tests' seeded weights in the converted layout: same shapes, so same cost."""
    from vidcolor.weights.convert import save_converted
    from tests.seeded_weights import seeded_converted

    for kind, tensors in seeded_converted().items():
        save_converted(directory, kind, tensors)
    return directory


def _decode(path: Path, limit: int | None = None) -> list:
    from vidcolor.io.reader import open_clip

    with open_clip(path) as clip:
        return [frame.rgb for frame in clip.frames(max_frames=limit)]


def run_worker(spec: dict) -> dict:
    """One configuration, in this (fresh) process."""
    from vidcolor import Colorizer

    workdir = Path(spec["workdir"])
    weights_dir, weights = None, "none"
    if spec["engine"] == "devc":
        from vidcolor.weights import cache

        if cache.is_installed():
            weights = "installed"
        else:
            weights = "seeded"
            weights_dir = _seeded_weights_dir(Path(tempfile.mkdtemp(dir=workdir)))
    on_cuda = spec["device"] == "cuda"
    with measure(sync_cuda=on_cuda) as load:
        colorizer = Colorizer(engine=spec["engine"], device=spec["device"],
                              precision=spec["precision"], weights_dir=weights_dir)
    src, ref, preset = Path(spec["src"]), Path(spec["ref"]), spec["preset"]
    for _ in colorizer.colorize_frames(_decode(src, WARMUP_FRAMES), ref, preset=preset):
        pass

    dst = workdir / f"out-{spec['engine']}-{preset}-{spec['device']}.mp4"
    fps_with_io, fps_without_io = [], []
    for _ in range(spec["repeats"]):
        reset_peak_rss()
        reset_cuda_peak()
        with measure(sync_cuda=on_cuda) as with_io:
            summary = colorizer.colorize_video(src, ref, dst, preset=preset, overwrite=True)
        fps_with_io.append(summary.frames / with_io.seconds)
    rss_with_io, cuda_with_io = peak_rss_bytes(), cuda_peak_bytes()

    frames = _decode(src)
    for _ in range(spec["repeats"]):
        reset_peak_rss()
        reset_cuda_peak()
        produced = 0
        with measure(sync_cuda=on_cuda) as without_io:
            for _ in colorizer.colorize_frames(frames, ref, preset=preset):
                produced += 1
        fps_without_io.append(produced / without_io.seconds)
    return {
        "engine": colorizer.engine.name, "weights": weights, "preset": preset,
        "device": str(colorizer.device), "precision": str(colorizer.dtype),
        "size": spec["size"], "frames": summary.frames, "load_s": load.seconds,
        # Best of the repeats: other load on the machine only ever slows a run down.
        "fps_with_io": max(fps_with_io), "fps_without_io": max(fps_without_io),
        "rss_with_io": rss_with_io, "rss_without_io": peak_rss_bytes(),
        "cuda_with_io": cuda_with_io, "cuda_without_io": cuda_peak_bytes(),
    }


def run_in_subprocess(spec: dict) -> dict:
    return run_script_worker(__file__, spec, RESULT_PREFIX)


def _devices(choice: str) -> list[str]:
    if choice == "auto":
        return ["cpu", "cuda"] if cuda_available() else ["cpu"]
    return choice.split(",")


def _row(result: dict) -> list[object]:
    size = "x".join(map(str, result["size"]))
    if "error" in result:
        return [result["engine"], "", result["preset"], result["device"], size, "", "",
                f"failed: {result['error']}", "", "", "", "", ""]
    cuda = result["cuda_with_io"]
    return [result["engine"], result["weights"], result["preset"], result["device"], size,
            result["frames"], f"{result['load_s']:.1f}", f"{result['fps_with_io']:.2f}",
            f"{result['fps_without_io']:.2f}",
            format_ratio(result["fps_with_io"], result["fps_without_io"]),
            format_bytes(result["rss_with_io"]),
            format_bytes(result["rss_without_io"]), format_bytes(cuda) if cuda else "-"]


HEADERS = ["engine", "weights", "preset", "device", "source HxW", "frames", "load s",
           "fps with I/O", "fps without I/O", "with / without", "peak RSS with I/O",
           "peak RSS without I/O", "CUDA peak"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", default="classic,devc")
    parser.add_argument("--presets", default="default,official")
    parser.add_argument("--sizes", default="432x768", help="source sizes HxW, comma-separated")
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=1,
                        help="timed runs per measurement; the fastest is reported")
    parser.add_argument("--devices", default="auto", help="auto (cpu, plus cuda if present) "
                        "or a comma-separated list")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(RESULT_PREFIX + json.dumps(run_worker(json.loads(args.worker))), flush=True)
        return 0

    results = []
    with tempfile.TemporaryDirectory(prefix="vidcolor-bench-") as tmp:
        for size_text in args.sizes.split(","):
            size = parse_size(size_text)
            tag = f"{size[0]}x{size[1]}"
            src = write_gray_clip(Path(tmp) / f"gray-{tag}.mp4", args.frames, size)
            ref = write_reference(Path(tmp) / f"ref-{tag}.png", size)
            for device in _devices(args.devices):
                for engine in args.engines.split(","):
                    for preset in args.presets.split(","):
                        spec = {"engine": engine, "preset": preset, "device": device,
                                "precision": args.precision, "size": list(size),
                                "repeats": args.repeats,
                                "src": str(src), "ref": str(ref), "workdir": tmp}
                        result = run_in_subprocess(spec)
                        print(" ".join(map(str, _row(result))), file=sys.stderr, flush=True)
                        results.append(result)
    print(f"`{command_line()}` ({machine_summary()})\n")
    print(markdown_table(HEADERS, [_row(r) for r in results]))
    _print_device_ratios(results)
    return 0 if all("error" not in r for r in results) else 1


def _print_device_ratios(results: list[dict]) -> None:
    """CUDA over CPU speed for each configuration measured on both."""
    by_key = {}
    for r in results:
        if "error" not in r:
            by_key[(r["engine"], r["preset"], tuple(r["size"]), r["device"].split(":")[0])] = r
    rows = []
    for (engine, preset, size, device), r in by_key.items():
        cpu = by_key.get((engine, preset, size, "cpu"))
        if device == "cuda" and cpu:
            rows.append([engine, preset, "x".join(map(str, size)),
                         f"{r['fps_with_io'] / cpu['fps_with_io']:.1f}x",
                         f"{r['fps_without_io'] / cpu['fps_without_io']:.1f}x"])
    if rows:
        print("\nCUDA speed-up over CPU:\n")
        print(markdown_table(["engine", "preset", "source HxW", "with I/O", "without I/O"], rows))


if __name__ == "__main__":
    sys.exit(main())
