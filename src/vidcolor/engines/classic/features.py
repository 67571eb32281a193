"""Hand-made per-pixel features from luminance: the classic engine's stand-in for VGG.

The paper matches a grayscale frame to a colour reference through deep features of the
luminance (REFERENCE.md §3-4). Here every grid position gets a vector made of what a small
neighbourhood of luminance looks like, at several scales:

* ``intensity``: local means at 1, 2, 4 and 8 analysis pixels (where it is, in context);
* ``contrast``: local standard deviations at 2 and 4 pixels (how textured);
* ``gradient``: signed gradients at 1 and 4 pixels (edge direction);
* ``patch``: a 3x3 sampling of the lightly blurred luminance, 2 pixels apart (local layout).

Each channel is divided by its spread over the *reference* (so no channel dominates by its
units), then each group is scaled by its weight in :class:`FeatureWeights` over the square root
of its size; the correlation centres and normalises them like the paper (Eq. 3).

Every feature is linear in the luminance, so the centring and normalisation of the correlation
make the match invariant to a gain and offset of the frame's luminance: a reference and frames
of different exposure need no explicit luminance remapping (Welsh et al. 2002 remap the
reference's luminance to the target's mean and standard deviation; here that would change
nothing). Features are computed on an "analysis" image at twice the grid resolution and pooled
2x2 onto the grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# The official feature grid is a quarter of the network size, an eighth of the working size
# (REFERENCE.md §4: 54x96 for 432x768). The classic engine keeps that stride and widens it for
# large working sizes, so the grid never exceeds twice the official grid (bounded cost).
GRID_STRIDE = 8
MAX_GRID_POSITIONS = 2 * 54 * 96
ANALYSIS_PER_GRID = 2  # analysis image: twice the grid resolution, pooled 2x2 at the end
INTENSITY_SIGMAS = (1.0, 2.0, 4.0, 8.0)
CONTRAST_SIGMAS = (2.0, 4.0)
GRADIENT_SIGMAS = (1.0, 4.0)
PATCH_SIGMA = 1.0
PATCH_STEP = 2  # analysis pixels between the 3x3 samples of the patch descriptor
CHANNEL_SPREAD_FLOOR = 1e-3  # luminance in [0, 1]: flat channels are not blown up


@dataclass(frozen=True)
class FeatureWeights:
    """Relative weight of each feature group in the cosine similarity.

    Equal weights: doubling any one group changed the demo clip's PSNR by -0.3 to +0.1 dB
    (bench/classic_quality.py, 24 frames), so none is favoured.
    """

    intensity: float = 1.0
    contrast: float = 1.0
    gradient: float = 1.0
    patch: float = 1.0


def grid_size(height: int, width: int) -> tuple[int, int]:
    """The feature grid for a working size: stride 8 (official), wider for large pictures."""
    stride = max(GRID_STRIDE, math.sqrt(height * width / MAX_GRID_POSITIONS))
    return max(1, round(height / stride)), max(1, round(width / stride))


def _gaussian_kernel(sigma: float, like: torch.Tensor) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=like.dtype, device=like.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), borders replicated."""
    kernel = _gaussian_kernel(sigma, image)
    radius = kernel.numel() // 2
    batch, channels, height, width = image.shape
    flat = image.reshape(batch * channels, 1, height, width)
    flat = F.pad(flat, (radius, radius, 0, 0), mode="replicate")
    flat = F.conv2d(flat, kernel.view(1, 1, 1, -1))
    flat = F.pad(flat, (0, 0, radius, radius), mode="replicate")
    flat = F.conv2d(flat, kernel.view(1, 1, -1, 1))
    return flat.reshape(batch, channels, height, width)


def _shift(image: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """out[y, x] = image[y + rows, x + cols], borders replicated."""
    pad = max(abs(rows), abs(cols))
    if pad == 0:
        return image
    padded = F.pad(image, (pad, pad, pad, pad), mode="replicate")
    height, width = image.shape[-2:]
    return padded[..., pad + rows: pad + rows + height, pad + cols: pad + cols + width]


def _gradients(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences (d/drow, d/dcol), borders replicated."""
    return ((_shift(image, 1, 0) - _shift(image, -1, 0)) / 2,
            (_shift(image, 0, 1) - _shift(image, 0, -1)) / 2)


GROUP_SIZES = {
    "intensity": len(INTENSITY_SIGMAS),
    "contrast": len(CONTRAST_SIGMAS),
    "gradient": 2 * len(GRADIENT_SIGMAS),
    "patch": 9,
}


def raw_features(luminance: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Luminance (B, 1, H, W) in [0, 1] -> features (B, C, gh, gw), groups in GROUP_SIZES order."""
    analysis = (grid[0] * ANALYSIS_PER_GRID, grid[1] * ANALYSIS_PER_GRID)
    image = luminance
    if tuple(image.shape[-2:]) != analysis:
        shrink = analysis[0] < image.shape[-2] or analysis[1] < image.shape[-1]
        image = F.interpolate(image, size=analysis, mode="bilinear", align_corners=False,
                              antialias=shrink)
    sigmas = sorted(set(INTENSITY_SIGMAS + CONTRAST_SIGMAS + GRADIENT_SIGMAS + (PATCH_SIGMA,)))
    blurred = {sigma: gaussian_blur(image, sigma) for sigma in sigmas}
    intensity = [blurred[s] for s in INTENSITY_SIGMAS]
    contrast = [(gaussian_blur(image * image, s) - blurred[s] ** 2).clamp_min(0).sqrt()
                for s in CONTRAST_SIGMAS]
    # Scaled by sigma so a ramp reads the same at every scale.
    gradient = [g * s for s in GRADIENT_SIGMAS for g in _gradients(blurred[s])]
    patch = [_shift(blurred[PATCH_SIGMA], dy * PATCH_STEP, dx * PATCH_STEP)
             for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    features = torch.cat(intensity + contrast + gradient + patch, 1)
    return F.avg_pool2d(features, ANALYSIS_PER_GRID)


def group_scale(weights: FeatureWeights, like: torch.Tensor) -> torch.Tensor:
    """Per-channel multipliers (1, C, 1, 1): a group's weight spread over its channels, so a
    group's share of the similarity does not grow with its number of channels."""
    scale = [getattr(weights, name) / math.sqrt(size)
             for name, size in GROUP_SIZES.items() for _ in range(size)]
    return torch.tensor(scale, dtype=like.dtype, device=like.device).view(1, -1, 1, 1)


def channel_spread(features: torch.Tensor) -> torch.Tensor:
    """Per-channel standard deviation over positions, (1, C, 1, 1), floored."""
    return features.std(dim=(0, 2, 3), keepdim=True).clamp_min(CHANNEL_SPREAD_FLOOR)
