"""Output naming and the side-by-side preview picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def default_output(src: Path, kind: str) -> Path:
    """``old.mp4`` -> ``old.color.mp4``; a frame folder -> ``frames_color/``; image -> PNG."""
    if kind == "folder":
        return src.with_name(src.name + "_color")  # a dot would read as a file extension
    if kind == "image":
        return src.with_name(f"{src.stem}.color.png")
    return src.with_name(f"{src.stem}.color{src.suffix}")


def convert_depth(rgb: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """uint8 <-> uint16 by full-scale rescaling (255 <-> 65535)."""
    if rgb.dtype == dtype:
        return rgb
    scale = float(np.iinfo(dtype).max) / float(np.iinfo(rgb.dtype).max)
    return np.round(rgb.astype(np.float64) * scale).astype(dtype)


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Input | output: the input brought to the output's size and bit depth."""
    h, w = right.shape[:2]
    if left.shape[:2] != (h, w):
        t = torch.from_numpy(left.astype(np.float32)).permute(2, 0, 1)[None]
        t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        top = float(np.iinfo(left.dtype).max)
        left = t[0].permute(1, 2, 0).round().clamp(0, top).numpy().astype(left.dtype)
    return np.concatenate([convert_depth(left, right.dtype), right], axis=1)
