"""The ``--compare`` preview picture: input | output side by side."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from vidcolor.color.depth import convert_depth, full_scale


def side_by_side(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Input | output: the input brought to the output's size and bit depth."""
    h, w = right.shape[:2]
    if left.shape[:2] != (h, w):
        t = torch.from_numpy(left.astype(np.float32)).permute(2, 0, 1)[None]
        t = F.interpolate(t, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        top = float(full_scale(left.dtype))
        left = t[0].permute(1, 2, 0).round().clamp(0, top).numpy().astype(left.dtype)
    return np.concatenate([convert_depth(left, right.dtype), right], axis=1)
