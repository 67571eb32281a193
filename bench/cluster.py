"""Throughput of ``vidcolor batch --cluster local:N`` for N = 1, 2, ... on one archive.

    python bench/cluster.py                          # 4 clips of 48 frames, 160x120, N = 1, 2
    python bench/cluster.py --folder ARCHIVE --workers 1,2

For each N, a fresh local Ray cluster colorizes the whole archive (classic engine, h264 out);
fps = frames colorized / wall time from the first task to the last (cluster start and worker
start-up, which load the colorizer once per worker, are printed apart). The runs go one after
the other on the same machine, so their ratio is the figure to read. Figures only.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def synthetic_archive(folder: Path, clips: int, frames: int, size: tuple[int, int]) -> Path:
    from clips import make_clip, pattern_frame, write_png

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(clips):
        made = make_clip(folder / f"clip{i}.mp4", n_frames=frames, size=size, audio=True)
        write_png(folder / f"clip{i}.png", pattern_frame(3 * i + 1, made.width, made.height))
    return folder


def run(folder: Path, workers: int) -> dict:
    from vidcolor.batch import cluster
    from vidcolor.batch.runner import plan_jobs

    out = Path(tempfile.mkdtemp(prefix="vidcolor-bench-cluster-"))
    started = time.perf_counter()
    try:
        outcome = cluster.run_cluster_batch(
            plan_jobs(folder, out, None), out, cluster.ClusterSpec(local_workers=workers),
            colorizer_options=dict(engine="classic", device="cpu", precision="auto"),
            video_options=dict(mode="exemplar", preset="default", size=None, codec="h264",
                               crf=18))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    total = time.perf_counter() - started
    return {"workers": workers, "frames": outcome.frames, "work_s": outcome.seconds,
            "total_s": total, "fps": outcome.frames / outcome.seconds if outcome.seconds else 0,
            "failed": len(outcome.groups["failed"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, help="an archive (videos + references)")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--size", default="160x120", help="WxH of the synthetic clips")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        width, height = (int(v) for v in args.size.split("x"))
        folder = args.folder or synthetic_archive(Path(tmp) / "archive", args.clips,
                                                  args.frames, (width, height))
        results = [run(folder, int(n)) for n in args.workers.split(",")]
    base = results[0]["fps"] or 1
    print(f"{'workers':>7} {'frames':>6} {'work s':>8} {'total s':>8} {'fps':>7} {'x':>5}")
    for r in results:
        print(f"{r['workers']:>7} {r['frames']:>6} {r['work_s']:>8.1f} {r['total_s']:>8.1f} "
              f"{r['fps']:>7.2f} {r['fps'] / base:>5.2f}" + (f"  {r['failed']} failed"
                                                           if r["failed"] else ""))


if __name__ == "__main__":
    main()
