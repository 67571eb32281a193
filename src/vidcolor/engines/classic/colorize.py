"""The classic engine's colorization step: no learning, four hand-made operations.

1. ``frame_motion``: dense optical flow from the frame to the previous one (OpenCV's DIS,
   chosen by ``bench/flow_choice.py``) with a per-pixel reliability: forward-backward
   consistency times photometric agreement; zero everywhere after a scene cut.
2. ``track_reference``: in propagation mode, where each pixel's colour came from in the
   reference, composed along the flow frame after frame while the chain stays reliable. Colours
   are then read from the reference once (``sample_tracked``), not resampled from the previous
   output every frame: repeated bilinear warps blur chroma (a sub-pixel shift u blurs by a
   variance u(1 - u) each time), which is what plain flow propagation loses on long shots.
3. ``reference_weight``: how much to trust the reference colour the correspondence warped onto
   each pixel, from its max cosine (paper Eq. 5).
4. ``fuse_and_fill``: the confidence-weighted mix of the carried colour, the warped reference
   colour and (with a small weight) the flow's own guess where it is unreliable, spread
   edge-aware into what none of them covers with ``normalized_fgs`` guided by the frame's
   luminance; where the carried colour is reliable it is kept as is.

These play the part of the paper's ColorVidNet, whose inputs are the same: frame L, warped
colours, similarity map and the previous frame's output (REFERENCE.md §5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vidcolor.color.smooth import luminance_guide, normalized_fgs
from vidcolor.motion.flow import consistency_mask, dis_flow, warp


@dataclass(frozen=True)
class FusionSettings:
    """Constants of the colorization step; defaults chosen on bench/footage_quality.py."""

    # Reference confidence: cosine below ``confidence_floor`` counts for nothing, 1.0 fully,
    # raised to ``confidence_power`` in between; ``reference_weight`` scales it against the
    # carried colour, whose reliability is at most 1.
    confidence_floor: float = 0.9
    confidence_power: float = 1.0
    # 0.1: the hand-made match is far less exact than consistent flow on real footage (0.5,
    # the synthetic clip's best, lost 2-3 dB to plain flow propagation on box.mp4), so it
    # only decides where the flow fails.
    reference_weight: float = 0.1
    # Photometric check of the flow: a luminance (in [0, 1]) mismatch of this size multiplies
    # the carried colour's reliability by e^-1. Loose: real footage has noise, compression and
    # lighting changes (0.03 fell back to the reference on correct flow).
    photometric_tolerance: float = 0.1
    # Mean reliability below this: a scene cut, the previous output is dropped. On the demo
    # clip within-shot pairs score 0.48-0.85 (120x160 to 240x320), the cut 0.13-0.21.
    cut_reliable_fraction: float = 0.3
    # Weight of the flow's guess where the flow is unreliable (occlusions): plain flow
    # propagation would keep it; here it only counts where nothing better covers the pixel.
    unreliable_carry_weight: float = 0.05
    # Tracked reference colours: a luminance mismatch of this size between the frame and the
    # reference at the tracked position halves the share of the reference's colour (the rest
    # is the carried colour), so a chain that drifted onto another surface stops copying it.
    tracking_tolerance: float = 0.1
    # Edge-aware filling (fast global smoother): strength and edge sensitivity (guide levels).
    fill_lambda: float = 50.0
    fill_sigma: float = 3.0
    # Share of the carried colour kept as is (unsmoothed) where it is fully reliable. (Doing
    # the same for confident reference colours measured no better: they are less exact.)
    keep_carried: float = 1.0
    # DIS preset of the flow (vidcolor.motion.flow.dis_flow).
    flow_preset: str = "medium"


@dataclass
class Motion:
    """Flow from a frame to the previous one and how far each pixel can trust it.

    ``flow`` (2, H, W): ``warp(previous, flow) ≈ frame``; ``consistent`` (H, W) bool, the
    forward-backward check; ``reliability`` (H, W) in [0, 1], zero after a scene cut.
    """

    flow: np.ndarray
    consistent: np.ndarray
    reliability: np.ndarray


def reference_weight(similarity: np.ndarray, settings: FusionSettings) -> np.ndarray:
    """Max cosine in [-1, 1] -> weight in [0, reference_weight]."""
    floor = settings.confidence_floor
    ramp = np.clip((similarity - floor) / (1.0 - floor), 0.0, 1.0)
    return settings.reference_weight * ramp ** settings.confidence_power


def frame_motion(luminance: np.ndarray, previous_luminance: np.ndarray,
                 settings: FusionSettings) -> Motion:
    """Flow and reliability between a frame and the previous one, (H, W) luminance in [0, 1].

    Reliability is zero where the forward-backward check fails (occlusions, disocclusions),
    lower where the warped previous luminance disagrees with the frame, and zero everywhere
    when too few pixels pass (a scene cut). The flow is estimated in float32 (a displacement
    in pixels needs no more); the colours keep their own dtype.
    """
    flow = dis_flow(luminance, previous_luminance, settings.flow_preset)
    flow_back = dis_flow(previous_luminance, luminance, settings.flow_preset)
    consistent = consistency_mask(flow, flow_back)
    mismatch = np.abs(warp(previous_luminance, flow) - luminance)
    reliability = consistent * np.exp(-(mismatch / settings.photometric_tolerance) ** 2)
    if reliability.mean() < settings.cut_reliable_fraction:
        reliability = np.zeros_like(reliability)
        consistent = np.zeros_like(consistent)
    return Motion(flow, consistent, reliability.astype(np.float32))


def carry_previous(luminance: np.ndarray, previous_luminance: np.ndarray,
                   previous_ab: np.ndarray, settings: FusionSettings
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The previous output (2, H, W) moved onto the current frame, and its reliability."""
    motion = frame_motion(luminance, previous_luminance, settings)
    return warp(previous_ab, motion.flow), motion.reliability


def track_reference(motion: Motion, offsets: np.ndarray, tracked: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Compose the frame-to-reference mapping with one more frame of flow.

    ``offsets`` (2, H, W): the previous frame's pixel p came from the reference at
    p + offsets[:, p]; ``tracked`` (H, W) bool, where that chain is still valid. Pixel p of the
    frame is at q = p + flow(p) in the previous one, so it came from q + offsets(q). The
    offsets are read at the nearest pixel to q (never blended across a motion boundary), which
    is exact for a locally constant offset. The chain breaks where the flow is unreliable.
    """
    offsets = motion.flow + warp(offsets, motion.flow, mode="nearest")
    tracked = motion.consistent & (warp(tracked.astype(np.float32), motion.flow,
                                        mode="nearest") > 0.5)
    return offsets.astype(np.float32), tracked


def sample_tracked(reference_lab: np.ndarray, luminance_centred: np.ndarray,
                   offsets: np.ndarray, tracked: np.ndarray, settings: FusionSettings
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The reference's ab read along the tracked mapping, and the share (H, W) to give it.

    ``reference_lab`` (3, H, W) centred Lab. The share is zero off the chain and falls with
    the luminance mismatch between the frame and the reference at the tracked position.
    """
    sampled = warp(reference_lab, offsets)
    mismatch = (sampled[0] - luminance_centred) / 100.0
    share = tracked / (1.0 + (mismatch / settings.tracking_tolerance) ** 2)
    return sampled[1:], share.astype(np.float32)


def fuse_and_fill(l_centred: np.ndarray, reference_ab: np.ndarray, ref_weight: np.ndarray,
                  carried_ab: np.ndarray | None, carried_weight: np.ndarray | None,
                  settings: FusionSettings) -> np.ndarray:
    """Mix the warped reference colours and the carried previous output, fill the rest.

    ``l_centred`` (H, W) the frame's centred L; ``reference_ab``/``carried_ab`` (2, H, W);
    weights (H, W) >= 0. Where the carried colour is unreliable it still counts with
    ``unreliable_carry_weight``: the flow's guess beats nothing. Returns ab (2, H, W) in
    ``reference_ab``'s dtype (float32 or float64).
    """
    weighted = reference_ab * ref_weight
    total = ref_weight.copy()
    if carried_ab is not None:
        weight = carried_weight + settings.unreliable_carry_weight * (1.0 - carried_weight)
        weighted = weighted + carried_ab * weight
        total = total + weight
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
