"""sRGB <-> CIELAB (D65, 2 degree observer) in torch, on ``(*, 3, H, W)`` tensors.

The formulas and constants are those of ``skimage.color`` (``rgb2lab`` / ``lab2rgb``), which the
official DEVC code uses for its input and output (REFERENCE.md §2, §7), so a frame converted
here matches the official pre-processing up to floating-point rounding. Works in float32 and
float64; the dtype of the input is kept.

Also here: the official normalisation of Lab for the networks (centred L, raw ab). The official
repository's own ``tensor_lab2rgb``, which differs from skimage on purpose, is in
``color/official.py`` with the release's other quirks.
"""

from __future__ import annotations

import torch

# --- Normalisation the networks see (official utils/util.py:15-18, REFERENCE.md §2.4) -------
L_MEAN = 50.0  # centred L = (L - 50) / 1, so L in [0, 100] becomes [-50, 50]
L_NORM = 1.0
AB_MEAN = 0.0  # ab is never scaled: the networks see ab in raw Lab units
AB_NORM = 1.0
L_RANGE = 100.0  # L* spans [0, 100]

# --- sRGB (IEC 61966-2-1) and CIELAB constants, as in skimage.color.colorconv ---------------
# Linear RGB -> XYZ, "from sRGB specification" (skimage's xyz_from_rgb).
XYZ_FROM_RGB = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
D65_WHITE_2DEG = (0.95047, 1.0, 1.08883)  # skimage's D65 / 2 degree reference white
SRGB_LINEAR_THRESHOLD = 0.04045  # below it the sRGB decoding curve is linear
SRGB_ENCODE_THRESHOLD = 0.0031308  # the same knee on the linear side
SRGB_LINEAR_SLOPE = 12.92
SRGB_GAMMA = 2.4
SRGB_OFFSET = 0.055
LAB_EPSILON = 0.008856  # (6/29)^3 rounded as in skimage: cube root above, linear below
LAB_KAPPA_SLOPE = 7.787  # slope of the linear segment, (29/6)^2 / 3 rounded
LAB_F_THRESHOLD = 0.2068966  # 6/29 rounded: inverse knee used by skimage and the official code
LAB_F_OFFSET = 16.0 / 116.0


def _check_image(x: torch.Tensor, name: str) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape (*, 3, H, W), got {type(x).__name__}")
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"{name}: expected shape (*, 3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {x.dtype}")


def _matrix(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64, device=like.device).to(like.dtype)


def _apply_matrix(matrix: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-pixel 3x3 matrix product on the channel axis (-3)."""
    return torch.einsum("ij,...jhw->...ihw", matrix, x)


def _white(like: torch.Tensor) -> torch.Tensor:
    return _matrix(D65_WHITE_2DEG, like).view(3, 1, 1)


def _rgb_from_xyz(like: torch.Tensor) -> torch.Tensor:
    # Inverted in float64 like skimage (scipy.linalg.inv), then cast.
    inverse = torch.linalg.inv(torch.tensor(XYZ_FROM_RGB, dtype=torch.float64))
    return inverse.to(device=like.device, dtype=like.dtype)


def srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    """Undo the sRGB transfer curve (values in [0, 1])."""
    curved = torch.pow((rgb.clamp_min(SRGB_LINEAR_THRESHOLD) + SRGB_OFFSET) / (1 + SRGB_OFFSET), SRGB_GAMMA)
    return torch.where(rgb > SRGB_LINEAR_THRESHOLD, curved, rgb / SRGB_LINEAR_SLOPE)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    """Apply the sRGB transfer curve; negative values stay on the linear segment."""
    curved = (1 + SRGB_OFFSET) * torch.pow(linear.clamp_min(SRGB_ENCODE_THRESHOLD), 1 / SRGB_GAMMA) - SRGB_OFFSET
    return torch.where(linear > SRGB_ENCODE_THRESHOLD, curved, linear * SRGB_LINEAR_SLOPE)


def _lab_f(t: torch.Tensor) -> torch.Tensor:
    # pow(1/3) is undefined for negatives; the mask keeps them on the linear branch anyway.
    cube_root = torch.pow(t.clamp_min(LAB_EPSILON), 1.0 / 3.0)
    return torch.where(t > LAB_EPSILON, cube_root, LAB_KAPPA_SLOPE * t + LAB_F_OFFSET)


def _lab_f_inverse(f: torch.Tensor) -> torch.Tensor:
    return torch.where(f > LAB_F_THRESHOLD, f * f * f, (f - LAB_F_OFFSET) / LAB_KAPPA_SLOPE)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB in [0, 1] -> CIELAB (L in [0, 100], raw a, b), as ``skimage.color.rgb2lab``."""
    _check_image(rgb, "rgb_to_lab")
    xyz = _apply_matrix(_matrix(XYZ_FROM_RGB, rgb), srgb_to_linear(rgb)) / _white(rgb)
    f = _lab_f(xyz)
    fx, fy, fz = f.unbind(-3)
    lightness = 116.0 * fy - 16.0
    return torch.stack((lightness, 500.0 * (fx - fy), 200.0 * (fy - fz)), dim=-3)


def rgb_to_lightness(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (*, 3, H, W) -> L (*, 1, H, W), as ``rgb_to_lab(rgb)[..., :1, :, :]`` at a third of
    the work: L depends only on the luminance Y (whose white point is 1)."""
    _check_image(rgb, "rgb_to_lightness")
    y_row = _matrix(XYZ_FROM_RGB[1], rgb).view(1, 3)
    luminance = _apply_matrix(y_row, srgb_to_linear(rgb))
    return 116.0 * _lab_f(luminance) - 16.0


def lab_to_rgb(lab: torch.Tensor, clip: bool = False, rgb_from_xyz=None) -> torch.Tensor:
    """CIELAB -> sRGB. Unclipped by default so out-of-gamut colours survive a round trip.

    With ``clip=True`` it reproduces ``skimage.color.lab2rgb`` exactly in behaviour: negative
    Z is set to 0 (skimage's "invalid pixels") and the result is clipped to [0, 1].
    ``rgb_from_xyz``: a 3x3 matrix instead of the exact inverse of ``XYZ_FROM_RGB`` (the
    official release hard-codes its own, ``color/official.py``).
    """
    _check_image(lab, "lab_to_rgb")
    lightness, a, b = lab.unbind(-3)
    fy = (lightness + 16.0) / 116.0
    fx = a / 500.0 + fy
    fz = fy - b / 200.0
    if clip:
        fz = fz.clamp_min(0.0)
    xyz = _lab_f_inverse(torch.stack((fx, fy, fz), dim=-3)) * _white(lab)
    matrix = _rgb_from_xyz(lab) if rgb_from_xyz is None else _matrix(rgb_from_xyz, lab)
    rgb = linear_to_srgb(_apply_matrix(matrix, xyz))
    return rgb.clamp(0.0, 1.0) if clip else rgb


def center_lab(lab: torch.Tensor) -> torch.Tensor:
    """Official network normalisation: (L - 50) / 1, ab unchanged (REFERENCE.md §2.4)."""
    _check_image(lab, "center_lab")
    lightness, ab = lab[..., :1, :, :], lab[..., 1:, :, :]
    return torch.cat(((lightness - L_MEAN) / L_NORM, (ab - AB_MEAN) / AB_NORM), dim=-3)


def uncenter_lab(centred: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`center_lab`."""
    _check_image(centred, "uncenter_lab")
    lightness, ab = centred[..., :1, :, :], centred[..., 1:, :, :]
    return torch.cat((lightness * L_NORM + L_MEAN, ab * AB_NORM + AB_MEAN), dim=-3)

