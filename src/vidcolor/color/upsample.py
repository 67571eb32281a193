"""Chroma up to the source resolution with the source's own luminance as guide.

The fast guided filter (He and Sun, "Fast Guided Filter", 2015; the guided filter of He, Sun
and Tang, TPAMI 2013): fit ab ≈ a·L + b in small windows at the low resolution, bring the
coefficients a, b up bilinearly, and apply them to the full-resolution luminance. Colour edges
then sit on the luminance edges instead of the blur of the low-resolution grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Guided-filter regularisation for L in [0, 1]: small enough that colour edges snap to luminance
# edges, large enough that flat regions keep the low-resolution colour.
GUIDED_EPS = 1e-3


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window, borders replicated, (B, C, H, W)."""
    k = 2 * radius + 1
    return F.avg_pool2d(F.pad(x, (radius,) * 4, mode="replicate"), k, stride=1)


def guided_coefficients(ab: torch.Tensor, luminance: torch.Tensor, radius: int = 1,
                        eps: float = GUIDED_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-resolution maps A, B with ab ≈ A·L + B, from ab (B, 2, h, w) and the full-resolution
    luminance (B, 1, H, W) in [0, 1]. Equal sizes give A = 0, B = ab (nothing to upsample)."""
    if tuple(ab.shape[-2:]) == tuple(luminance.shape[-2:]):
        return torch.zeros_like(ab), ab
    low_guide = F.interpolate(luminance.to(ab.dtype), size=tuple(ab.shape[-2:]), mode="bilinear",
                              align_corners=False, antialias=True)
    mean_i = box_mean(low_guide, radius)
    mean_p = box_mean(ab, radius)
    a = (box_mean(low_guide * ab, radius) - mean_i * mean_p) / (
        box_mean(low_guide * low_guide, radius) - mean_i * mean_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius), box_mean(b, radius)


def upsample_rows(maps: torch.Tensor, size: tuple[int, int], rows: tuple[int, int]) -> torch.Tensor:
    """Rows ``rows[0]:rows[1]`` of ``F.interpolate(maps, size, bilinear, align_corners=False)``
    without building the full-size result (grid_sample maps pixel j to (j + 0.5)·in/out - 0.5
    and clamps at the border, exactly as interpolate does)."""
    height, width = size
    ys = (torch.arange(rows[0], rows[1], dtype=maps.dtype) + 0.5) * (2.0 / height) - 1.0
    xs = (torch.arange(width, dtype=maps.dtype) + 0.5) * (2.0 / width) - 1.0
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None]
    grid = grid.expand(maps.shape[0], -1, -1, -1).to(maps.device)
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)

