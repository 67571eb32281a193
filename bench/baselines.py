"""Two baselines the classic engine must beat (issue 5), on HxWx3 uint8 RGB frames.

* ``flow_propagation``: the first frame's true colours carried from frame to frame by optical
  flow alone (warp the previous ab onto the next frame), nothing else. What "just track the
  colours" gives in propagation mode. Four flows: the project's TV-L1 (``estimate_flow``),
  OpenCV's Farneback and OpenCV's DIS (``FLOW_BASELINES``; issue 16 measured both), and the
  classic engine's own DIS settings (plain propagation on the engine's flow).
* ``global_transfer``: Reinhard, Ashikhmin, Gooch & Shirley, "Color transfer between images"
  (IEEE CG&A 2001): match each Lab channel's mean and standard deviation to the reference's.
  For a grayscale input (a = b = 0, no spread) it degenerates to the reference's mean ab
  on every pixel; the frame's luminance is kept. What "no correspondence" gives in exemplar
  mode.

Both keep the input's luminance exactly, like the engines, so differences are colour only.
Lab conversions are scikit-image's (the official pipeline's, REFERENCE.md §2).
"""

from __future__ import annotations

import warnings
from typing import Callable, Iterable, Iterator

import numpy as np
from skimage.color import lab2rgb, rgb2lab

from vidcolor.engines.classic.colorize import FusionSettings, chain_flow
from vidcolor.motion.flow import dis_flow, estimate_flow, farneback_flow, warp

# The propagation baselines by name: flows of vidcolor.motion.flow.
FLOW_BASELINES = {
    "TV-L1 flow": estimate_flow,
    "Farneback flow": farneback_flow,
    "DIS flow": dis_flow,
    # The classic engine's own frame-to-frame flow: plain propagation on the same flow.
    "classic's DIS flow": lambda reference, moving: chain_flow(reference, moving,
                                                               FusionSettings()),
}
# A channel with less spread than this (Lab units) is flat: its shape is not stretched.
FLAT_CHANNEL_STD = 1e-6


def _lab(rgb: np.ndarray) -> np.ndarray:
    return rgb2lab(rgb.astype(np.float64) / 255.0)


def _rgb(lab: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        # Out-of-gamut colours are clipped, as in every engine's output; no need to say so.
        warnings.simplefilter("ignore", UserWarning)
        rgb = lab2rgb(lab)
    return (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def flow_propagation(gray_frames: Iterable[np.ndarray], first_color: np.ndarray,
                     flow: Callable[[np.ndarray, np.ndarray], np.ndarray] = estimate_flow
                     ) -> Iterator[np.ndarray]:
    """Colour frame 0 with ``first_color``'s ab, then each next frame with the previous ab
    warped by ``flow(L_t, L_{t-1})`` (``vidcolor.motion.flow``'s convention). Frames are
    HxWx3 uint8 (gray or not: only their L is used)."""
    previous_l = previous_ab = None
    for index, frame in enumerate(gray_frames):
        lab = _lab(frame)
        luminance = lab[..., 0] / 100.0
        if index == 0:
            ab = np.moveaxis(_lab(first_color)[..., 1:], 2, 0)
        else:
            ab = warp(previous_ab, flow(luminance.astype(np.float32),
                                        previous_l.astype(np.float32)))
        lab[..., 1:] = np.moveaxis(ab, 0, 2)
        previous_l, previous_ab = luminance, ab
        yield _rgb(lab)


def reinhard_transfer(frame: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Reinhard et al. 2001 mean/std transfer in CIELAB of ``reference``'s colours onto
    ``frame`` (both HxWx3 uint8); the frame's L is kept."""
    lab, ref_lab = _lab(frame), _lab(reference)
    out = lab.copy()
    for channel in (1, 2):
        source, target = lab[..., channel], ref_lab[..., channel]
        spread = source.std()
        scale = target.std() / spread if spread > FLAT_CHANNEL_STD else 0.0
        out[..., channel] = (source - source.mean()) * scale + target.mean()
    return _rgb(out)


def global_transfer(gray_frames: Iterable[np.ndarray], reference: np.ndarray
                    ) -> Iterator[np.ndarray]:
    """``reinhard_transfer`` of the reference onto every frame."""
    for frame in gray_frames:
        yield reinhard_transfer(frame, reference)
