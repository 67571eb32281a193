"""Every quirk of the official release in one place, reproduced bit for bit.

The ``official`` preset exists to prove that we compute what the paper's code computes, so
every step here follows the official release exactly (REFERENCE.md §2, §3 and §7), rounding
and truncation included, and uses the same library calls (scikit-image) where the release
does: the cover-resize and crop of the input, its Lab conversion, its own Lab -> RGB for the
reference's VGG pass, the x1.25 chroma gain and fast global smoother of the output, and the
uint8 truncation at the end. The pieces are pure functions; ``pipeline/presets.py`` composes
them with an engine.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage import color as skcolor
from skimage import transform as sktransform

from vidcolor.color.depth import UINT8_MAX
from vidcolor.color.lab import L_MEAN, L_NORM, lab_to_rgb
from vidcolor.color.smooth import OFFICIAL_FGS_LAMBDA, OFFICIAL_FGS_SIGMA, fgs_filter, luminance_guide

# The official repository's hard-coded XYZ -> linear RGB matrix in tensor_lab2rgb
# (utils/util.py:379-414, REFERENCE.md §3). Not exactly inv(XYZ_FROM_RGB): kept on purpose.
OFFICIAL_RGB_FROM_XYZ = (
    (3.24048134, -1.53715152, -0.49853633),
    (-0.96925495, 1.87599, 0.04155593),
    (0.05564664, -0.20404134, 1.05731107),
)
# "ab * 1.25" after the x2 upsample of the network's ab: a saturation boost (REFERENCE.md §7,
# test.py:99-117).
OFFICIAL_CHROMA_GAIN = 1.25
# feature_normalize's epsilon, ``x / (||x|| + 2.22e-16)`` (utils/util.py:155-158): both engines
# normalise features per position with it.
FEATURE_NORM_EPSILON = 2.22e-16


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


def official_lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """The official ``tensor_lab2rgb`` (utils/util.py:379-414), quirks included (REFERENCE.md §3).

    Input is un-centred Lab (L in [0, 100]). Differs from ``lab_to_rgb`` in the three ways the
    official reference VGG pass depends on: fz < 0 is set to 0, the XYZ -> RGB matrix is the
    repository's hard-coded one, and the result is clamped to [0, 1].
    """
    return lab_to_rgb(lab, clip=True, rgb_from_xyz=OFFICIAL_RGB_FROM_XYZ)


def postprocess_ab(ab: torch.Tensor, l_centred: torch.Tensor) -> torch.Tensor:
    """The release's post-processing of the network's ab, already at the working size:
    x1.25, then the fast global smoother guided by the frame's L (REFERENCE.md §7).

    ``ab`` (1, 2, H, W) in any float dtype, ``l_centred`` (1, 1, H, W) -> (1, 2, H, W) float32:
    the release's smoother is OpenCV's, which only takes float32.
    """
    guide = fgs_guide(l_centred[0, 0])
    boosted = (ab * OFFICIAL_CHROMA_GAIN)[0].float().numpy()
    smoothed = fgs_filter(boosted, guide, lam=OFFICIAL_FGS_LAMBDA, sigma=OFFICIAL_FGS_SIGMA)
    return torch.as_tensor(np.asarray(smoothed), dtype=torch.float32)[None]


def fgs_guide(l_centred_full) -> np.ndarray:
    """Guide image of the official smoother (REFERENCE.md §7.3): ``luminance_guide`` of the
    smoother's module, also accepting the (1, H, W) L channel the pipeline holds."""
    lightness = _as_numpy(l_centred_full, "fgs_guide")
    if lightness.ndim == 3 and lightness.shape[0] == 1:
        lightness = lightness[0]
    if lightness.ndim != 2:
        raise ValueError(f"fgs_guide: expected centred L of shape (1, H, W) or (H, W), got {lightness.shape}")
    return luminance_guide(lightness)