"""What the shot detector keeps of each frame: a tiny luma picture, a histogram, a sharpness.

Everything is computed on the luma of a subsampled copy of the frame, so the cost per frame
stays small and almost independent of the resolution (a 1080p frame is read at about 1/7 of
its width). Black-and-white films have only luma, and colour footage cuts show in luma too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# Shorter side of the subsampled luma the statistics are computed on (about 1/7 of 1080p).
ANALYSIS_SIDE = 144
# The tiny picture compared between frames: 18x32 cells (16:9 at 1/60 of 1080p). Fine enough
# that a pan moves content across cells, coarse enough that noise and grain average out.
THUMB_SIZE = (18, 32)
HISTOGRAM_BINS = 32
# Rec. 601 luma weights (the ones FFmpeg uses for untagged standard-definition video).
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class Signature:
    """One frame as the detector sees it.

    ``thumb``: (18, 32) mean luma per cell in [0, 1]; ``histogram``: luma histogram summing to
    1; ``mean``/``std``: of the luma; ``sharpness``: variance of the Laplacian of the luma
    (higher is sharper; used to pick a representative frame per shot).
    """

    thumb: np.ndarray
    histogram: np.ndarray
    mean: float
    std: float
    sharpness: float


def analysis_luma(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 uint8/uint16 RGB -> subsampled luma (float32 in [0, 1])."""
    step = max(1, min(rgb.shape[0], rgb.shape[1]) // ANALYSIS_SIDE)
    small = rgb[::step, ::step]
    scale = 255.0 if rgb.dtype == np.uint8 else 65535.0
    return small.astype(np.float32) @ (LUMA_WEIGHTS / scale)


def laplacian_variance(luma: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian: a standard focus measure (blur lowers it)."""
    if min(luma.shape) < 3:
        return 0.0
    lap = (luma[1:-1, :-2] + luma[1:-1, 2:] + luma[:-2, 1:-1] + luma[2:, 1:-1]
           - 4.0 * luma[1:-1, 1:-1])
    return float(lap.var())


def signature(rgb: np.ndarray) -> Signature:
    luma = analysis_luma(rgb)
    thumb = F.adaptive_avg_pool2d(torch.from_numpy(luma)[None, None], THUMB_SIZE)[0, 0].numpy()
    histogram, _ = np.histogram(luma, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    histogram = histogram.astype(np.float32) / max(1, luma.size)
    return Signature(thumb=thumb, histogram=histogram, mean=float(luma.mean()),
                     std=float(luma.std()), sharpness=laplacian_variance(luma))
