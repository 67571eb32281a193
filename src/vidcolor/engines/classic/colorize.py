"""The classic engine's colorization step: no learning, three hand-made operations.

1. ``carry_previous``: the previous output, moved onto the current frame by optical flow, with
   a per-pixel reliability (forward-backward consistency times photometric agreement).
2. ``reference_weight``: how much to trust the reference colour warped onto each pixel, from
   the correspondence's max cosine (paper Eq. 5).
3. ``fuse_and_fill``: the confidence-weighted mix of both, spread edge-aware into the pixels
   neither source covers with ``normalized_fgs`` guided by the frame's luminance; where the
   carried colour is reliable its detail is kept rather than smoothed.

These play the part of the paper's ColorVidNet, whose inputs are the same: frame L, warped
colours, similarity map and the previous frame's output (REFERENCE.md §5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidcolor.color.smooth import luminance_guide, normalized_fgs
from vidcolor.motion.flow import consistency_mask, estimate_flow, warp


@dataclass(frozen=True)
class FusionSettings:
    """Constants of the colorization step; defaults chosen on bench/classic_quality.py."""

    # Reference confidence: cosine below ``confidence_floor`` counts for nothing, 1.0 fully,
    # raised to ``confidence_power`` in between; ``reference_weight`` scales it against the
    # carried colour, whose reliability is at most 1.
    confidence_floor: float = 0.9
    confidence_power: float = 1.0
    reference_weight: float = 0.5
    # Photometric check of the flow: a luminance (in [0, 1]) mismatch of this size multiplies
    # the carried colour's reliability by e^-1.
    photometric_tolerance: float = 0.03
    # Mean reliability below this: a scene cut, the previous output is dropped. On the demo
    # clip within-shot pairs score 0.48-0.85 (120x160 to 240x320), the cut 0.13-0.21.
    cut_reliable_fraction: float = 0.3
    # Edge-aware filling (fast global smoother): strength and edge sensitivity (guide levels).
    fill_lambda: float = 50.0
    fill_sigma: float = 3.0
    # Share of the carried colour kept as is (unsmoothed) where it is fully reliable. (Doing
    # the same for confident reference colours measured no better: they are less exact.)
    keep_carried: float = 1.0
    # Long side of the grid optical flow is solved on (vidcolor.motion.flow).
    flow_max_side: int = 192


def reference_weight(similarity: np.ndarray, settings: FusionSettings) -> np.ndarray:
    """Max cosine in [-1, 1] -> weight in [0, reference_weight]."""
    floor = settings.confidence_floor
    ramp = np.clip((similarity - floor) / (1.0 - floor), 0.0, 1.0)
    return settings.reference_weight * ramp ** settings.confidence_power


def carry_previous(luminance: np.ndarray, previous_luminance: np.ndarray,
                   previous_ab: np.ndarray, settings: FusionSettings
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Move the previous output onto the current frame.

    ``luminance`` and ``previous_luminance`` (H, W) in [0, 1], ``previous_ab`` (2, H, W).
    The flow is estimated in float32 (a displacement in pixels needs no more); the colours are
    carried in ``previous_ab``'s dtype. Returns the carried ab (2, H, W) and its reliability
    (H, W) in [0, 1], in that dtype: zero where the
    forward-backward check fails (occlusions, cut), lower where the warped previous luminance
    disagrees with the frame, and zero everywhere after a scene cut.
    """
    flow = estimate_flow(luminance, previous_luminance, max_side=settings.flow_max_side)
    flow_back = estimate_flow(previous_luminance, luminance, max_side=settings.flow_max_side)
    consistent = consistency_mask(flow, flow_back)
    carried = warp(previous_ab, flow)
    mismatch = np.abs(warp(previous_luminance, flow) - luminance)
    reliability = consistent * np.exp(-(mismatch / settings.photometric_tolerance) ** 2)
    if reliability.mean() < settings.cut_reliable_fraction:
        reliability = np.zeros_like(reliability)
    return carried, reliability.astype(previous_ab.dtype, copy=False)


def fuse_and_fill(l_centred: np.ndarray, reference_ab: np.ndarray, ref_weight: np.ndarray,
                  carried_ab: np.ndarray | None, carried_weight: np.ndarray | None,
                  settings: FusionSettings) -> np.ndarray:
    """Mix the warped reference colours and the carried previous output, fill the rest.

    ``l_centred`` (H, W) the frame's centred L; ``reference_ab``/``carried_ab`` (2, H, W);
    weights (H, W) >= 0. Returns ab (2, H, W) in ``reference_ab``'s dtype (float32 or float64).
    """
    weighted = reference_ab * ref_weight
    total = ref_weight.copy()
    if carried_ab is not None:
        weighted = weighted + carried_ab * carried_weight
        total = total + carried_weight
    mixed = weighted / np.maximum(total, 1e-8)
    guide = luminance_guide(l_centred)
    dtype = reference_ab.dtype
    filled = normalized_fgs(mixed.astype(dtype), total.astype(dtype), guide,
                            lam=settings.fill_lambda, sigma=settings.fill_sigma)
    if carried_ab is None:
        return filled.astype(dtype)
    # Carried colours are already at full detail where reliable: keep them rather than smooth.
    keep = settings.keep_carried * carried_weight
    return (keep * carried_ab + (1.0 - keep) * filled).astype(dtype)
