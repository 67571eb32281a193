"""Loading and checking the reference image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vidcolor.color.depth import to_8bit_scale
from vidcolor.errors import RefImageError
from vidcolor.io.naming import VIDEO_EXTENSIONS

# Below this chroma spread (in 8-bit levels between channels) the reference has no colours.
GRAY_REFERENCE_SPREAD = 2.0


def load_reference(ref: str | Path | np.ndarray) -> np.ndarray:
    """A path or an HxWx3 array -> HxWx3 uint8/uint16 RGB. RefImageError in one line."""
    if isinstance(ref, np.ndarray):
        if ref.ndim != 3 or ref.shape[2] != 3 or ref.dtype not in (np.uint8, np.uint16):
            raise RefImageError(
                f"reference array must be HxWx3 uint8 or uint16, got {ref.shape} {ref.dtype}"
            )
        return ref
    from vidcolor.io.images import load_image

    path = Path(ref)
    if not path.exists():
        raise RefImageError(f"{path}: reference image not found")
    if path.is_dir():
        raise RefImageError(f"{path}: the reference must be an image file, not a folder")
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        raise RefImageError(
            f"{path}: the reference is a video; give a still image (e.g. a colored frame saved as PNG)"
        )
    return load_image(path, error=RefImageError)


def is_gray(rgb: np.ndarray) -> bool:
    """True when the picture carries no colour to transfer (all channels nearly equal)."""
    sample = to_8bit_scale(rgb[:: max(1, rgb.shape[0] // 256), :: max(1, rgb.shape[1] // 256)])
    spread = sample.max(axis=2) - sample.min(axis=2)
    return float(np.percentile(spread, 99)) < GRAY_REFERENCE_SPREAD
