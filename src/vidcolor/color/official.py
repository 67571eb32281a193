"""The official test script's pre- and post-processing, reproduced bit for bit.

The ``official`` preset exists to prove that we compute what the paper's code computes, so
every step here follows the official release exactly (REFERENCE.md §2 and §7), rounding and
truncation included, and uses the same library calls (scikit-image) where the release does.
The pieces are pure functions; the lead's ``engine.py`` composes them with the network and
H4's fast global smoother.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage import color as skcolor
from skimage import transform as sktransform

from vidcolor.color.lab import L_MEAN, L_NORM
from vidcolor.color.smooth import luminance_guide

UINT8_MAX = 255.0


def _check_rgb_uint8(rgb: np.ndarray, name: str) -> None:
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        raise ValueError(f"{name}: expected an HxWx3 RGB array, got shape {shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 RGB (the official pipeline is 8-bit), got {rgb.dtype}")


def _as_numpy(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{name}: expected a torch.Tensor or numpy array, got {type(x).__name__}")


def _skimage_resize_uint8(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """CenterPad's resize: order 1, reflect, anti-aliased, range kept, then ``astype`` truncation.

    Channel by channel: bit-identical to resizing the HxWx3 array at once (the channel axis
    is neither smoothed nor interpolated; tested against the 3-channel call), and ~1.5x
    faster because scipy's zoom then skips its size-1 pass over the channel axis.
    """
    out = np.empty((*size, rgb.shape[2]), dtype=np.uint8)
    for channel in range(rgb.shape[2]):
        resized = sktransform.resize(
            rgb[:, :, channel], size, mode="reflect", preserve_range=True, clip=False, anti_aliasing=True
        )
        out[:, :, channel] = resized.astype(np.uint8)  # truncation, not rounding (util_distortion.py:241,258)
    return out


def _torchvision_center_crop(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """torchvision ``CenterCrop`` as the official transform applies it after CenterPad.

    A no-op after the two cropping branches of CenterPad; it only acts when the equal-aspect
    branch rounds a side down by one, in which case it zero-pads like torchvision does.
    """
    out_h, out_w = size
    h, w = rgb.shape[:2]
    if out_h > h or out_w > w:
        pad_top = (out_h - h) // 2 if out_h > h else 0
        pad_left = (out_w - w) // 2 if out_w > w else 0
        pad_bottom = (out_h - h + 1) // 2 if out_h > h else 0
        pad_right = (out_w - w + 1) // 2 if out_w > w else 0
        rgb = np.pad(rgb, ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0)))
        h, w = rgb.shape[:2]
    top = int(round((h - out_h) / 2.0))
    left = int(round((w - out_w) / 2.0))
    return rgb[top : top + out_h, left : left + out_w]


def cover_crop(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Official ``CenterPad(size)`` + ``CenterCrop(size)`` (REFERENCE.md §2.1).

    Despite its name CenterPad never pads: it resizes the image to cover the target box and
    crops the centre. The branch is chosen by comparing aspect ratios exactly as the release
    does (float division), and sizes are truncated with ``int`` as there.
    """
    _check_rgb_uint8(rgb, "cover_crop")
    target_h, target_w = (int(s) for s in size)
    if target_h <= 0 or target_w <= 0:
        raise ValueError(f"cover_crop: target size must be positive, got {size}")
    h, w = rgb.shape[:2]
    target_ratio = target_h / target_w
    ratio = h / w
    if ratio == target_ratio:
        if h == target_h:
            out = rgb
        else:
            out = _skimage_resize_uint8(rgb, (int(h * target_h / h), int(w * target_h / h)))
    elif ratio > target_ratio:  # taller: fit the width, keep the middle rows
        new_h = int(h * target_w / w)
        resized = _skimage_resize_uint8(rgb, (new_h, target_w))
        top = (new_h - target_h) // 2
        out = resized[top : top + target_h]
    else:  # wider: fit the height, keep the middle columns
        new_w = int(w * target_h / h)
        resized = _skimage_resize_uint8(rgb, (target_h, new_w))
        left = (new_w - target_w) // 2
        out = resized[:, left : left + target_w]
    return np.ascontiguousarray(_torchvision_center_crop(out, (target_h, target_w)))


def official_lab(rgb: np.ndarray) -> torch.Tensor:
    """uint8 RGB HxWx3 -> centred Lab (3, H, W) float32, as the official transform holds it.

    ``skimage.color.rgb2lab`` in float64, cast to float32 by ``ToTensor``, then L - 50 in
    float32 by ``Normalize`` (REFERENCE.md §2.2-2.4). The float32 cast is part of the result.
    """
    _check_rgb_uint8(rgb, "official_lab")
    lab64 = skcolor.rgb2lab(rgb)  # uint8 -> /255 float64 inside skimage
    lab = torch.from_numpy(np.ascontiguousarray(lab64.transpose(2, 0, 1))).to(torch.float32)
    lab[0] = (lab[0] - L_MEAN) / L_NORM
    return lab


def _l_and_ab(l_centred_full, ab_full, name: str) -> tuple[np.ndarray, np.ndarray]:
    lightness = _as_numpy(l_centred_full, name)
    ab = _as_numpy(ab_full, name)
    if lightness.ndim == 3 and lightness.shape[0] == 1:
        lightness = lightness[0]
    if lightness.ndim != 2:
        raise ValueError(f"{name}: expected centred L of shape (1, H, W) or (H, W), got {lightness.shape}")
    if ab.ndim != 3 or ab.shape[0] != 2 or ab.shape[1:] != lightness.shape:
        raise ValueError(
            f"{name}: expected ab of shape (2, {lightness.shape[0]}, {lightness.shape[1]}), got {ab.shape}"
        )
    return lightness, ab


def official_to_rgb_uint8(l_centred_full, ab_full) -> np.ndarray:
    """Centred L (1, H, W) + ab (2, H, W) -> uint8 HxWx3, as ``batch_lab2rgb_transpose_mc``.

    L is un-centred in its own dtype (the release does it on its float32 tensor), the Lab image
    is built in float64, converted by ``skimage.color.lab2rgb``, clipped to [0, 1], x255 and
    truncated by ``astype(uint8)`` (REFERENCE.md §7.4).
    """
    lightness, ab = _l_and_ab(l_centred_full, ab_full, "official_to_rgb_uint8")
    lightness = lightness * lightness.dtype.type(L_NORM) + lightness.dtype.type(L_MEAN)
    lab = np.concatenate((lightness[None], ab), axis=0).astype(np.float64).transpose(1, 2, 0)
    rgb = np.clip(skcolor.lab2rgb(lab), 0.0, 1.0)
    return (rgb * UINT8_MAX).astype(np.uint8)


def fgs_guide(l_centred_full) -> np.ndarray:
    """Guide image of the official smoother (REFERENCE.md §7.3): ``luminance_guide`` of the
    smoother's module, also accepting the (1, H, W) L channel the pipeline holds."""
    lightness = _as_numpy(l_centred_full, "fgs_guide")
    if lightness.ndim == 3 and lightness.shape[0] == 1:
        lightness = lightness[0]
    if lightness.ndim != 2:
        raise ValueError(f"fgs_guide: expected centred L of shape (1, H, W) or (H, W), got {lightness.shape}")
    return luminance_guide(lightness)