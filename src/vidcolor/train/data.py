"""Training data (paper §4): pairs of consecutive frames, a reference, flow and occlusion.

A data folder holds color videos and, optionally, still images. ``prepare`` decodes each video
once into a cache (frames resized to cover the crop with some room, as uint8; the optical flow
from every frame t-1 to t and its occlusion mask), so training streams small memory-mapped
arrays from disk and never holds a video. Still images become pseudo-videos (Figure 3): frame t
is frame t-1 under a random small rotation, scale and shift, whose flow is known exactly.

Every sample is a pure function of (seed, global sample index): its RNG is seeded with both, so
the same index gives the same sample in any process, worker or resumed run. That is what makes
one process, N processes (torchrun) and a resumed run train on identical batches.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from vidcolor.color.lab import center_lab, rgb_to_lab, rgb_to_lightness
from vidcolor.errors import InputError, OptionError
from vidcolor.io.images import is_image_path, load_image
from vidcolor.io.reader import open_clip
from vidcolor.motion.flow import consistency_mask, estimate_flow, warp
from vidcolor.io.naming import VIDEO_EXTENSIONS

PAPER_CROP = (216, 384)  # §4: "384x216" crops (H, W here), also the official train.py size
STORE_MARGIN = 1.25  # frames are cached at 1.25x the size that just covers the crop: room to move
FLOW_METHOD = "tvl1-fb"  # vidcolor.motion.flow: TV-L1 flow t-1 -> t, forward-backward occlusion check
CACHE_VERSION = 1  # bump when the cache layout or FLOW_METHOD changes
# Reference choice (official train.py:63, videoloader.py:253-259): another frame of the same
# video with probability 0.7, else the frame's own ground truth, crippled (paper §4) by noise on
# the image or on its VGG features, half and half (ours: the split is not published).
REAL_REFERENCE_PROBABILITY = 0.7
IMAGE_NOISE_PROBABILITY = 0.5
REFERENCE_NOISE_STD = 10.0  # Lab units of the Gaussian noise on a self reference (ours)
LUMINANCE_NOISE_STD = 2.0  # std of the noise on the input L (official train.py:77, FrameColor.py:56-57)
# Pseudo-video motion for still images (ours; Figure 3 shows small rigid distortions).
PSEUDO_MAX_ROTATION_DEG = 3.0
PSEUDO_MAX_SCALE = 0.05
PSEUDO_MAX_SHIFT = 0.04  # fraction of the crop size


@dataclass(frozen=True)
class CachedSource:
    """One prepared video or still: its cache folder and frame count (1 for a still)."""

    name: str
    directory: Path
    frames: int

    @property
    def is_still(self) -> bool:
        return self.frames == 1


def scan_data(folder: Path) -> tuple[list[Path], list[Path]]:
    """(videos, still images) directly in ``folder`` and its subfolders, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: training data folder not found")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    videos = [p for p in files if p.suffix.lower() in VIDEO_EXTENSIONS]
    stills = [p for p in files if is_image_path(p)]
    if not videos and not stills:
        raise InputError(f"{folder}: no videos ({', '.join(sorted(VIDEO_EXTENSIONS))}) or images to train on")
    return videos, stills


def stored_size(height: int, width: int, crop: tuple[int, int]) -> tuple[int, int]:
    """Source size -> cached size: aspect kept, covering ``crop`` x STORE_MARGIN."""
    scale = max(crop[0] * STORE_MARGIN / height, crop[1] * STORE_MARGIN / width)
    return max(crop[0], math.ceil(height * scale)), max(crop[1], math.ceil(width * scale))


def _resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    tensor = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float()  # a copy: decoder memory is read-only
    if rgb.dtype == np.uint16:
        tensor = tensor / 257.0
    out = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def _luminance(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) -> L / 100 in [0, 1], the flow's input."""
    tensor = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    return (rgb_to_lightness(tensor)[0] / 100.0).numpy()


def _cache_key(path: Path, crop: tuple[int, int], max_frames: int | None) -> str:
    stat = path.stat()
    text = json.dumps([str(path.resolve()), stat.st_size, stat.st_mtime_ns, list(crop), max_frames,
                       CACHE_VERSION, FLOW_METHOD])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _prepare_video(path: Path, target: Path, crop: tuple[int, int], max_frames: int | None) -> int:
    """Decode, resize, flow + occlusion per consecutive pair, into ``target`` (atomically)."""
    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    with open_clip(path, fast_rgb=True) as clip:
        size = stored_size(clip.info.height, clip.info.width, crop)
        frames = [_resize_rgb(frame.rgb, size) for frame in clip.frames(max_frames=max_frames)]
    if len(frames) < 2:
        raise InputError(f"{path}: needs at least 2 frames to train on, decoded {len(frames)}")
    stack = np.lib.format.open_memmap(work / "frames.npy", mode="w+", dtype=np.uint8, shape=(len(frames), *size, 3))
    stack[:] = np.stack(frames)
    stack.flush()
    flows = np.lib.format.open_memmap(work / "flow.npy", mode="w+", dtype=np.float16,
                                      shape=(len(frames) - 1, 2, *size))
    masks = np.lib.format.open_memmap(work / "mask.npy", mode="w+", dtype=np.uint8, shape=(len(frames) - 1, *size))
    luminance = _luminance(frames[0])
    for t in range(1, len(frames)):
        current = _luminance(frames[t])
        forward = estimate_flow(luminance, current)  # on frame t-1's grid: p -> p + flow in frame t
        backward = estimate_flow(current, luminance)
        flows[t - 1] = forward
        masks[t - 1] = consistency_mask(forward, backward)
        luminance = current
    flows.flush()
    masks.flush()
    del stack, flows, masks
    _write_meta(work, path, len(frames))
    _publish(work, target)
    return len(frames)


def _prepare_still(path: Path, target: Path, crop: tuple[int, int]) -> int:
    work = target.with_name(target.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rgb = load_image(path)
    resized = _resize_rgb(rgb, stored_size(rgb.shape[0], rgb.shape[1], crop))
    np.save(work / "frames.npy", resized[None])
    _write_meta(work, path, 1)
    _publish(work, target)
    return 1


def _publish(work: Path, target: Path) -> None:
    """The finished cache folder appears in one rename (a stale one is replaced)."""
    if target.exists():
        shutil.rmtree(target)
    os.replace(work, target)


def _write_meta(work: Path, source: Path, frames: int) -> None:
    meta = {"source": str(source), "frames": frames, "flow_method": FLOW_METHOD, "version": CACHE_VERSION}
    (work / "meta.json").write_text(json.dumps(meta))


def prepare(data: Path, cache: Path, crop: tuple[int, int], max_frames: int | None = None,
            on_source: Callable[[Path, bool], None] | None = None) -> list[CachedSource]:
    """Cache every video and still of ``data`` under ``cache`` (reused when already there).

    ``on_source(path, cached)`` is told about each source before it is (or is not) prepared.
    """
    videos, stills = scan_data(data)
    with _single_thread():
        return _prepare_all(videos, stills, cache, crop, max_frames, on_source)


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    """One torch thread while preparing: some kernels round differently (1 ulp) with the thread
    count, and a torchrun worker runs with fewer threads than a lone process; the cache must be
    the same bytes for both, or one process and N would train on slightly different flows."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _prepare_all(videos: list[Path], stills: list[Path], cache: Path, crop: tuple[int, int],
                 max_frames: int | None, on_source) -> list[CachedSource]:
    sources = []
    for path in videos + stills:
        target = Path(cache) / f"{path.stem}-{_cache_key(path, crop, max_frames)}"
        meta = target / "meta.json"
        if on_source:
            on_source(path, meta.is_file())
        if meta.is_file():
            frames = json.loads(meta.read_text())["frames"]
        elif path in videos:
            frames = _prepare_video(path, target, crop, max_frames)
        else:
            frames = _prepare_still(path, target, crop)
        sources.append(CachedSource(path.name, target, frames))
    return sources


# --- samples -------------------------------------------------------------------------------

def _random_crop(rng: np.random.Generator, size: tuple[int, int], crop: tuple[int, int]) -> tuple[slice, slice]:
    top = int(rng.integers(0, size[0] - crop[0] + 1))
    left = int(rng.integers(0, size[1] - crop[1] + 1))
    return slice(top, top + crop[0]), slice(left, left + crop[1])


def _inside(flow: torch.Tensor) -> torch.Tensor:
    """(2, H, W) flow -> bool (H, W): p + flow[p] lies inside the (cropped) frame."""
    height, width = flow.shape[-2:]
    rows = torch.arange(height, dtype=flow.dtype)[:, None] + flow[0]
    cols = torch.arange(width, dtype=flow.dtype)[None, :] + flow[1]
    return (rows >= 0) & (rows <= height - 1) & (cols >= 0) & (cols <= width - 1)


def pseudo_motion(rng: np.random.Generator, crop: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """A random similarity transform A about the crop centre, as two flows (Figure 3).

    Returns (backward, forward): frame t is ``warp(frame t-1, backward)`` with backward[p] =
    A(p) - p on frame t's grid, and forward[q] = A^-1(q) - q on frame t-1's grid is the flow
    t-1 -> t in the ``vidcolor.motion.flow`` convention, exactly.
    """
    angle = math.radians(rng.uniform(-PSEUDO_MAX_ROTATION_DEG, PSEUDO_MAX_ROTATION_DEG))
    scale = 1.0 + rng.uniform(-PSEUDO_MAX_SCALE, PSEUDO_MAX_SCALE)
    shift = np.array([rng.uniform(-1, 1) * PSEUDO_MAX_SHIFT * crop[0], rng.uniform(-1, 1) * PSEUDO_MAX_SHIFT * crop[1]])
    matrix = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    centre = np.array([(crop[0] - 1) / 2.0, (crop[1] - 1) / 2.0])
    rows, cols = np.mgrid[0 : crop[0], 0 : crop[1]].astype(np.float64)
    points = np.stack((rows, cols)) - centre[:, None, None]  # (2, H, W) relative to the centre

    def apply(m: np.ndarray, offset: np.ndarray) -> np.ndarray:
        return np.einsum("ij,jhw->ihw", m, points) + offset[:, None, None] - points

    backward = apply(matrix, shift)  # A(p) = M (p - c) + c + s
    inverse = np.linalg.inv(matrix)
    forward = apply(inverse, -inverse @ shift)  # A^-1(q) = M^-1 (q - c - s) + c
    return torch.from_numpy(backward.astype(np.float32)), torch.from_numpy(forward.astype(np.float32))


def _to_lab(rgb: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> centred Lab float32 (..., 3, H, W)."""
    tensor = torch.from_numpy(np.ascontiguousarray(rgb)).movedim(-1, -3).float() / 255.0
    return center_lab(rgb_to_lab(tensor))


class TrainingSamples(torch.utils.data.Dataset):
    """Map-style dataset indexed by the GLOBAL sample index (step * batch + position).

    The epoch of index k is k // n over the n (video, t) pairs and stills; each epoch visits them
    in a permutation drawn from (seed, epoch).
    """

    def __init__(self, sources: list[CachedSource], crop: tuple[int, int], seed: int):
        self.sources = sources
        self.crop = crop
        self.seed = seed
        # Items: (source index, t) with t >= 1 for videos, t = 0 for stills.
        self.items = [(s, t) for s, source in enumerate(sources)
                      for t in (range(1, source.frames) if not source.is_still else [0])]
        self._arrays: dict[int, tuple] = {}
        self._permutation: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:  # an index space, not a finite epoch; the sampler picks indices
        return 1 << 62

    def _open(self, s: int) -> tuple:
        if s not in self._arrays:
            directory = self.sources[s].directory
            frames = np.load(directory / "frames.npy", mmap_mode="r")
            if self.sources[s].is_still:
                self._arrays[s] = (frames, None, None)
            else:
                self._arrays[s] = (frames, np.load(directory / "flow.npy", mmap_mode="r"),
                                   np.load(directory / "mask.npy", mmap_mode="r"))
        return self._arrays[s]

    def item_of(self, index: int) -> tuple[int, int]:
        epoch, position = divmod(index, len(self.items))
        if self._permutation is None or self._permutation[0] != epoch:
            order = np.random.default_rng([self.seed, epoch, 0]).permutation(len(self.items))
            self._permutation = (epoch, order)
        return self.items[int(self._permutation[1][position])]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index, 1])
        s, t = self.item_of(index)
        frames, flows, masks = self._open(s)
        rows, cols = _random_crop(rng, frames.shape[1:3], self.crop)
        if self.sources[s].is_still:
            previous = torch.from_numpy(np.array(frames[0, rows, cols]))
            backward, flow = pseudo_motion(rng, self.crop)
            current = warp(previous.permute(2, 0, 1).float(), backward).round().clamp(0, 255)
            pair = np.stack((previous.numpy(), current.permute(1, 2, 0).to(torch.uint8).numpy()))
            mask = _inside(flow)
        else:
            pair = np.array(frames[t - 1 : t + 1, rows, cols])
            flow = torch.from_numpy(np.array(flows[t - 1, :, rows, cols], dtype=np.float32))
            mask = torch.from_numpy(np.array(masks[t - 1, rows, cols]) > 0) & _inside(flow)
        truth = _to_lab(pair)  # (2, 3, H, W)
        real_reference = rng.random() < REAL_REFERENCE_PROBABILITY
        image_noise = rng.random() < IMAGE_NOISE_PROBABILITY
        if real_reference:
            count = frames.shape[0]
            other = 0  # a still: its reference is another crop of itself
            if count > 1:
                other = int(rng.integers(0, count - 1))
                other += other >= t  # any frame but t itself
            ref_rows, ref_cols = _random_crop(rng, frames.shape[1:3], self.crop)
            reference = _to_lab(np.array(frames[other, ref_rows, ref_cols]))
        else:
            reference = truth[1].clone()
            if image_noise:
                reference += torch.from_numpy(rng.normal(0, REFERENCE_NOISE_STD, reference.shape).astype(np.float32))
        luminance_noise = rng.normal(0, LUMINANCE_NOISE_STD, (2, *self.crop)).astype(np.float32)
        return {
            "input_l": truth[:, 0] + torch.from_numpy(luminance_noise),
            "truth_lab": truth,
            "reference_lab": reference,
            "flow": flow,
            "mask": mask.float()[None],
            "self_reference": torch.tensor(float(not real_reference)),
            "feature_noise": torch.tensor(not real_reference and not image_noise),
            "noise_seed": torch.tensor(int(rng.integers(0, 1 << 62)), dtype=torch.int64),
        }


class GlobalBatchSampler(torch.utils.data.Sampler):
    """This process's share of each global batch, from ``start_step`` to ``steps``.

    Step s covers global indices s * B .. s * B + B - 1; process r of R takes the r-th slice of
    B / R. Resuming at step s is just starting here: the sampler's whole state is the step.
    """

    def __init__(self, batch_size: int, rank: int, world_size: int, start_step: int, steps: int):
        if batch_size % world_size:
            raise OptionError(f"--batch-size {batch_size} must be a multiple of the number of processes "
                              f"({world_size}): it is the global batch")
        self.per_process = batch_size // world_size
        self.batch_size, self.rank = batch_size, rank
        self.start_step, self.steps = start_step, steps

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.steps):
            first = step * self.batch_size + self.rank * self.per_process
            yield list(range(first, first + self.per_process))

    def __len__(self) -> int:
        return max(0, self.steps - self.start_step)
