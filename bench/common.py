"""Small helpers shared by the benchmark scripts: timing, peak memory, markdown tables.

Run a benchmark as a script from the repository root (``python bench/throughput.py``). A script
makes ``bench`` importable by putting the repository root on ``sys.path`` first::

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.common import markdown_table, measure, peak_rss_bytes

Benchmarks report figures; they never assert timings.

Peak memory comes from ``vidcolor.memory`` (Linux's ``VmHWM``, resettable, so one process can
measure several runs back to back; no psutil needed).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from vidcolor.memory import current_rss_bytes, peak_rss_bytes, reset_peak_rss  # noqa: F401 (for the scripts)

MIB = 1024 * 1024


def cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def reset_cuda_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def cuda_peak_bytes() -> int | None:
    """Peak memory allocated by torch on the current CUDA device, None without CUDA."""
    import torch

    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    return int(torch.cuda.max_memory_allocated())


@dataclass
class Stopwatch:
    """Elapsed wall time of a ``with measure() as watch:`` block, in ``watch.seconds``."""

    seconds: float = 0.0


@contextmanager
def measure(sync_cuda: bool = False) -> Iterator[Stopwatch]:
    """Time a block with ``perf_counter``; ``sync_cuda`` waits for queued GPU work at both ends."""
    watch = Stopwatch()
    if sync_cuda:
        import torch

        torch.cuda.synchronize()
    start = time.perf_counter()
    try:
        yield watch
    finally:
        if sync_cuda:
            import torch

            torch.cuda.synchronize()
        watch.seconds = time.perf_counter() - start


def format_bytes(n_bytes: int | None) -> str:
    return "n/a" if n_bytes is None else f"{n_bytes / MIB:,.0f} MiB"


def format_ratio(numerator: float | None, denominator: float | None) -> str:
    if not numerator or not denominator:
        return "n/a"
    return f"{numerator / denominator:.3f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table; each cell is ``str()``-ed, columns padded for reading raw."""
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    for row in cells:
        if len(row) != len(headers):
            raise ValueError(f"markdown_table: row {row} has {len(row)} cells, "
                             f"expected {len(headers)}")
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"

    separator = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(cells[0]), separator] + [line(r) for r in cells[1:]])


def command_line() -> str:
    """The command that produced the figures, so a README can quote it."""
    return shlex.join([Path(sys.executable).name, *sys.argv])


def machine_summary() -> str:
    """One line naming the machine: CPU count, Python, torch, and the GPU when there is one."""
    import torch

    parts = [f"{os.cpu_count()} CPU cores", f"Python {platform.python_version()}",
             f"torch {torch.__version__}", f"{torch.get_num_threads()} torch threads"]
    if torch.cuda.is_available():
        parts.append(f"GPU {torch.cuda.get_device_name()}")
    return ", ".join(parts)


def cpu_description() -> str:
    """The CPU model and whether it computes bfloat16 natively (bf16 speed depends on it)."""
    from vidcolor import info

    return f"{info.cpu_name()}, bfloat16 {info.cpu_bfloat16(info.cpu_flags())}"


def seeded():
    """The module of the seeded stand-in weights (GOLDEN.md's rule): tests/seeded_weights.py."""
    from tests import seeded_weights

    return seeded_weights


def seeded_weights_dir(directory: Path) -> Path:
    """The seeded stand-in weights (released layout: same shapes, so the same cost) saved as a
    converted weights folder. Speed does not depend on the values; quality does."""
    from vidcolor.weights.convert import save_converted

    for kind, tensors in seeded().seeded_converted().items():
        save_converted(directory, kind, tensors)
    return directory


def parse_size(text: str) -> tuple[int, int]:
    """``HxW`` (e.g. ``432x768``) -> (height, width); argparse-friendly ValueError otherwise."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"size must be HEIGHTxWIDTH like 432x768, got {text!r}") from None
    if height <= 0 or width <= 0:
        raise ValueError(f"size must be positive, got {text!r}")
    return height, width



# --- synthetic inputs ---------------------------------------------------------------------------

# The scene is larger than the frame by this factor so the camera can pan over it.
SCENE_MARGIN = 1.3
# Camera path period (frames): long clips loop over the same motion, so cost per frame is steady.
PAN_PERIOD_FRAMES = 50


def scene_image(size: tuple[int, int]):
    """skimage's astronaut (public domain, NASA) resized to cover ``size`` with a pan margin."""
    import numpy as np
    from skimage import data
    from skimage.transform import resize

    height, width = size
    scene_hw = (int(height * SCENE_MARGIN), int(width * SCENE_MARGIN))
    scene = resize(data.astronaut(), scene_hw, order=1, anti_aliasing=True, preserve_range=True)
    return np.round(scene).astype(np.uint8)


def write_reference(path: str | Path, size: tuple[int, int]) -> Path:
    """The colour scene itself, centre view, as PNG: a same-scene exemplar."""
    from PIL import Image

    height, width = size
    scene = scene_image(size)
    top, left = (scene.shape[0] - height) // 2, (scene.shape[1] - width) // 2
    Image.fromarray(scene[top: top + height, left: left + width]).save(path)
    return Path(path)


def write_gray_clip(path: str | Path, n_frames: int, size: tuple[int, int], fps: int = 25
                    ) -> Path:
    """A grey H.264 clip (yuv420p) panning over the scene, streamed to disk frame by frame."""
    import math

    import av
    import numpy as np
    from skimage.color import rgb2gray

    height, width = size
    gray_scene = np.round(rgb2gray(scene_image(size)) * 255).astype(np.uint8)
    spare_rows, spare_cols = gray_scene.shape[0] - height, gray_scene.shape[1] - width
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "crf": "16"}
        for index in range(n_frames):
            phase = 2 * math.pi * index / PAN_PERIOD_FRAMES
            top = round(spare_rows * (0.5 + 0.5 * math.sin(phase)))
            left = round(spare_cols * (0.5 + 0.5 * math.cos(phase)))
            view = gray_scene[top: top + height, left: left + width]
            rgb = np.repeat(view[:, :, None], 3, axis=2)
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            container.mux(stream.encode(frame.reformat(format="yuv420p")))
        container.mux(stream.encode(None))
    return Path(path)


def run_script_worker(script: str | Path, spec: dict, result_prefix: str) -> dict:
    """Run ``script --worker SPEC`` in a fresh process (its own peak RSS) and return the JSON
    it printed after ``result_prefix``; on failure ``{**spec, "error": "exit N: last line"}``."""
    command = [sys.executable, str(Path(script).resolve()), "--worker", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(result_prefix):
            return json.loads(line[len(result_prefix):])
    tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
    return {**spec, "error": f"exit {done.returncode}: {tail[0]}"}
