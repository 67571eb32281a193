"""The classic engine's colorization step: no learning, four hand-made operations.

1. ``frame_motion``: dense optical flow from the frame to the previous one (OpenCV's DIS,
   chosen by ``bench/flow_choice.py``) with a per-pixel reliability: forward-backward
   consistency times photometric agreement; zero everywhere after a scene cut.
2. ``carry_chain``: the previous output moved along that flow, exactly what plain flow
   propagation does (measured on real footage, bench/footage_quality.py: every departure
   from it inside a shot cost PSNR, reading colours once from the reference along composed
   flows lost 1.5 dB). Each colour also carries the luminance it was first read at; where
   that no longer matches the frame (``drift``), the colour slid off its surface (dragged
   by an occluder, or by an ill-posed flow in a flat region) and loses its weight.
3. ``read_keyframe``: in propagation mode, the reference (the clip's first frame) read along
   a direct flow where that flow is consistent and its luminance matches clearly better than
   the chain's: backgrounds revealed again after an occluder passed, a shot that returns.
4. ``reference_weight``: how much to trust the reference colour the correspondence warped onto
   each pixel, from its max cosine (paper Eq. 5).
5. ``fuse_and_fill``: the confidence-weighted mix of the carried colour, the warped reference
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
from vidcolor.motion.flow import consistency_mask, dis_flow, remap


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
    # Drift of carried colours (``drift``): window radius (pixels) of the mean luminance
    # mismatch, the mismatch (in [0, 1] L units) at which the weight falls to e^-1, and the
    # mismatch charged to a colour that was filled rather than carried.
    drift_radius: int = 3
    # 0.4: with the full-resolution flow and the flow's guess kept, +0.09 dB mean over 0.2.
    drift_tolerance: float = 0.4
    fill_penalty: float = 0.05
    # Keyframe reading (``read_keyframe``): used where its drift is below ``key_tolerance``
    # (2 L units: compression noise, not another surface) and below ``key_margin`` times the
    # chain's; DIS preset of its flows.
    key_tolerance: float = 0.02
    key_margin: float = 0.5
    key_preset: str = "fast"
    use_keyframe: bool = True
    # Where the flow's forward-backward check fails inside a shot: True fills from reliable
    # neighbours and the reference match, False keeps the flow's guess (plain propagation;
    # the drift test still drops colours that slid onto another surface). With the
    # full-resolution flow below, keeping scored +0.16 dB mean over filling (cup +0.91, a
    # deforming hand; jumps -0.10) on bench/footage_quality.py's 5 cases x 120 frames.
    fill_occlusions: bool = False
    # Edge-aware filling (fast global smoother): strength and edge sensitivity (guide levels).
    fill_lambda: float = 50.0
    fill_sigma: float = 3.0
    # Share of the carried colour kept as is (unsmoothed) where it is fully reliable. (Doing
    # the same for confident reference colours measured no better: they are less exact.)
    keep_carried: float = 1.0
    # DIS flow from frame to frame (vidcolor.motion.flow.dis_flow): the medium preset with
    # patches down to full resolution, every 4 pixels, 12 descent steps each. Measured
    # (bench/footage_quality.py, 5 cases x 120 frames): +0.30 dB mean (+0.66 on large jumps)
    # over the preset's own half-resolution patches, for 0.08 s more per 768x576 frame; the
    # preset's stride 3 and 25 steps at full resolution scored no better and cost 0.05 s more.
    flow_preset: str = "medium"
    flow_finest_scale: int | None = 0
    flow_patch_stride: int | None = 4
    flow_descent_iterations: int | None = 12


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


def chain_flow(reference: np.ndarray, moving: np.ndarray, settings: FusionSettings
               ) -> np.ndarray:
    """The frame-to-frame DIS flow with the settings' solver parameters (``dis_flow``'s
    convention); bench/baselines.py propagates along the same flow."""
    return dis_flow(reference, moving, settings.flow_preset, settings.flow_finest_scale,
                    settings.flow_patch_stride, settings.flow_descent_iterations)


def frame_motion(luminance: np.ndarray, previous_luminance: np.ndarray,
                 settings: FusionSettings) -> Motion:
    """Flow and reliability between a frame and the previous one, (H, W) luminance in [0, 1].

    Reliability is zero where the forward-backward check fails (occlusions, disocclusions),
    lower where the warped previous luminance disagrees with the frame, and zero everywhere
    when too few pixels pass (a scene cut). The flow is estimated in float32 (a displacement
    in pixels needs no more); the colours keep their own dtype.
    """
    flow = chain_flow(luminance, previous_luminance, settings)
    flow_back = chain_flow(previous_luminance, luminance, settings)
    consistent = consistency_mask(flow, flow_back, fast=True)
    mismatch = np.abs(remap(previous_luminance, flow) - luminance)
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
    return remap(previous_ab, motion.flow), motion.reliability


@dataclass
class Colours:
    """Colours brought onto the current frame, with where they came from.

    ``ab`` (2, H, W); ``source_l`` (H, W) the centred L of the pixel each colour was first
    read at (the keyframe's, or the frame's where it was filled); ``filled`` (H, W) in [0, 1],
    the share of the colour that was filled rather than carried; ``weight`` (H, W) in [0, 1],
    how far to keep it as it is.
    """

    ab: np.ndarray
    source_l: np.ndarray
    filled: np.ndarray
    weight: np.ndarray

    @classmethod
    def read_in_place(cls, l_centred: np.ndarray, ab: np.ndarray) -> "Colours":
        """Colours read where they are: their own luminance, nothing filled, fully kept."""
        return cls(ab=ab, source_l=l_centred, filled=np.zeros_like(l_centred),
                   weight=np.ones_like(l_centred))


def drift(source_l: np.ndarray, l_centred: np.ndarray, settings: FusionSettings) -> np.ndarray:
    """How far colours have slid off their surface: the mean (over a small window) absolute
    difference between the luminance they were read at and the frame's, in [0, 1] units. A
    colour carried along a correct flow keeps matching; one dragged by an occluder does not."""
    import cv2

    window = 2 * settings.drift_radius + 1
    difference = np.abs(source_l - l_centred).astype(np.float32) / 100.0
    return cv2.blur(difference, (window, window), borderType=cv2.BORDER_REPLICATE)


def carry_chain(motion: Motion, l_centred: np.ndarray, previous: Colours,
                settings: FusionSettings) -> Colours:
    """The previous output moved along the flow (what plain flow propagation does), its
    source luminance and filled share moved with it; weight: the flow's consistency times
    how well the source luminance still matches the frame."""
    moved = remap(np.concatenate([previous.ab, previous.source_l[None], previous.filled[None]]),
                  motion.flow)
    ab, source_l, filled = moved[:2], moved[2], moved[3]
    if settings.fill_occlusions or not motion.consistent.any():
        weight = motion.consistent.astype(np.float32)
    else:
        weight = np.ones_like(ab[0])  # within a shot plain propagation's guess is kept
    slide = drift(source_l, l_centred, settings)
    weight = weight * np.exp(-(slide / settings.drift_tolerance) ** 2)
    return Colours(ab, source_l, filled, weight.astype(np.float32))


def read_keyframe(l_centred: np.ndarray, key_lab: np.ndarray, chain: Colours,
                  settings: FusionSettings) -> Colours:
    """Colours read straight from the keyframe (the propagation reference, (3, H, W) centred
    Lab) along a direct flow, where that flow is consistent and its source luminance matches
    the frame clearly better than the chain's (``key_margin``): disocclusions the chain
    smeared, static backgrounds the chain blurred. Elsewhere the chain is kept."""
    luminance = (l_centred + 50.0) / 100.0
    key_luminance = (key_lab[0] + 50.0) / 100.0
    flow = dis_flow(luminance, key_luminance, settings.key_preset)
    back = dis_flow(key_luminance, luminance, settings.key_preset)
    consistent = consistency_mask(flow, back, fast=True)
    if consistent.mean() < settings.cut_reliable_fraction:
        return chain  # another scene: nothing of the keyframe to read
    moved = remap(key_lab, flow)
    slide = drift(moved[0], l_centred, settings)
    chain_slide = drift(chain.source_l, l_centred, settings) \
        + settings.fill_penalty * chain.filled
    chain_slide = np.where(chain.weight > 0, chain_slide, np.inf)
    use = consistent & (slide < settings.key_tolerance) \
        & (slide < settings.key_margin * chain_slide)
    weight = consistent.astype(np.float32)
    return Colours(np.where(use, moved[1:], chain.ab), np.where(use, moved[0], chain.source_l),
                   np.where(use, 0.0, chain.filled).astype(np.float32),
                   np.where(use, weight, chain.weight).astype(np.float32))


def fuse_and_fill(l_centred: np.ndarray, reference_ab: np.ndarray, ref_weight: np.ndarray,
                  carried: Colours | None, settings: FusionSettings
                  ) -> tuple[np.ndarray, Colours]:
    """Mix the warped reference colours and the carried colours, fill the rest.

    ``l_centred`` (H, W) the frame's centred L; ``reference_ab`` (2, H, W) with weights
    ``ref_weight`` (H, W) >= 0. Where the carried colour is unreliable it still counts with
    ``unreliable_carry_weight``: the flow's guess beats nothing. Where it is reliable it is
    kept as is (``keep_carried``). Returns ab (2, H, W) in ``reference_ab``'s dtype and the
    output as ``Colours`` for the next frame (filled pixels count as read at this frame's L).
    """
    dtype = reference_ab.dtype
    weighted = reference_ab * ref_weight
    total = ref_weight.copy()
    if carried is not None:
        weight = carried.weight + settings.unreliable_carry_weight * (1.0 - carried.weight)
        weighted = weighted + carried.ab * weight
        total = total + weight
    mixed = weighted / np.maximum(total, 1e-8)
    guide = luminance_guide(l_centred)
    filled = normalized_fgs(mixed.astype(dtype), total.astype(dtype), guide,
                            lam=settings.fill_lambda, sigma=settings.fill_sigma).astype(dtype)
    if carried is None:
        keep = np.zeros_like(l_centred)
        ab, source_l, share = filled, l_centred, np.ones_like(l_centred)
    else:
        # Carried colours are already at full detail where reliable: keep them, not smooth.
        keep = (settings.keep_carried * carried.weight).astype(dtype)
        ab = (keep * carried.ab + (1.0 - keep) * filled).astype(dtype)
        source_l = keep * carried.source_l + (1.0 - keep) * l_centred
        share = keep * carried.filled + (1.0 - keep)
    return ab, Colours(ab, source_l.astype(dtype), share.astype(dtype), keep.astype(dtype))
