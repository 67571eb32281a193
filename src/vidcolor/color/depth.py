"""Bit depth: the one place where 8-bit and 16-bit pictures are converted and scaled.

Pictures travel as HxWx3 ``uint8`` or ``uint16`` on their full scale (white is 255 or 65535),
so converting between the two is a change of scale by 257 (255 * 257 = 65535). Up is exact;
down rounds to nearest, in integers, which is bit-identical to ``round(x * 255 / 65535)`` for
every 16-bit value (no 16-bit value lies on a half step, tested exhaustively).
"""

from __future__ import annotations

import numpy as np
import torch

UINT8_MAX = 255
UINT16_MAX = 65535
_DEPTH_STEP = UINT16_MAX // UINT8_MAX  # 257
_HALF_STEP = _DEPTH_STEP // 2  # 128: round(x / 257) == (x + 128) // 257 for integers x
DEPTHS = (np.uint8, np.uint16)


def full_scale(dtype) -> int:
    """The value of full white for a picture dtype: 255 (uint8) or 65535 (uint16)."""
    dtype = np.dtype(dtype)
    if dtype not in DEPTHS:
        raise ValueError(f"expected uint8 or uint16 pixels, got {dtype}")
    return UINT8_MAX if dtype == np.uint8 else UINT16_MAX


def convert_depth(rgb: np.ndarray, dtype) -> np.ndarray:
    """uint8 <-> uint16 by full-scale rescaling (255 <-> 65535); the same depth is returned as is."""
    dtype = np.dtype(dtype)
    full_scale(dtype)
    if rgb.dtype == dtype:
        return rgb
    full_scale(rgb.dtype)
    if dtype == np.uint16:
        return rgb.astype(np.uint16) * _DEPTH_STEP
    return ((rgb.astype(np.uint32) + _HALF_STEP) // _DEPTH_STEP).astype(np.uint8)


def to_unit_float(rgb: np.ndarray, dtype=np.float32) -> np.ndarray:
    """A uint8/uint16 picture as floats in [0, 1]."""
    return rgb.astype(dtype) / dtype(full_scale(rgb.dtype))


def to_8bit_scale(rgb: np.ndarray) -> np.ndarray:
    """A uint8/uint16 picture as float64 on the 8-bit scale [0, 255] (16-bit is scaled down)."""
    if rgb.dtype == np.uint16:
        return rgb.astype(np.float64) * (UINT8_MAX / UINT16_MAX)
    full_scale(rgb.dtype)
    return rgb.astype(np.float64)


def to_unit_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8/uint16 -> (1, 3, H, W) float32 in [0, 1]."""
    scale = float(full_scale(rgb.dtype))
    if not (rgb.flags.writeable and rgb.flags.c_contiguous):  # decoder buffers, rot90 views
        rgb = rgb.copy()
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / scale


def from_unit_tensor(rgb: torch.Tensor, dtype) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> HxWx3 of ``dtype`` (uint8 or uint16), rounded."""
    scale = float(full_scale(dtype))
    out = (rgb[0].clamp(0, 1) * scale).round().permute(1, 2, 0)
    return out.cpu().numpy().astype(dtype)
