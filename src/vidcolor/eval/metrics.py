"""The paper's quality metrics as pure numpy functions on one frame or one pair of frames.

Conventions: RGB is HxWx3 on the 8-bit scale (uint8, or float already scaled to [0, 255]);
Lab is CIELAB D65 as ``skimage.color.rgb2lab`` gives it, HxWx3 with L in [0, 100] and ab in
Lab units; ab alone is HxWx2; luminance for flow and cut detection is HxW in [0, 1].
The streaming over whole clips lives in ``vidcolor.eval.evaluation``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import correlate1d
from skimage.color import rgb2lab

from vidcolor.color.depth import to_unit_float

# 8-bit RGB: the paper reports PSNR on 8-bit frames.
RGB_DATA_RANGE = 255.0
# ab channels are scored with the 8-bit Lab encoding's span, [-128, 127] -> 255, so PSNR-ab
# and PSNR-RGB share a scale. (The sRGB gamut itself reaches about a in [-86, 98],
# b in [-108, 94].)
AB_DATA_RANGE = 255.0

# SSIM constants of Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error
# visibility to structural similarity", IEEE TIP 2004, section III-C: K1, K2, and the 11x11
# circular-symmetric Gaussian window of standard deviation 1.5 samples.
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5

# Hasler & Süsstrunk, "Measuring colourfulness in natural images", SPIE 2003, Eq. (3):
# M = sigma_rgyb + 0.3 * mu_rgyb.
COLORFULNESS_MEAN_WEIGHT = 0.3

# Hard-cut detector (see ``is_hard_cut``): luminance histograms of this many bins, compared
# by total-variation distance. Measured on 240x320 views of skimage's astronaut, coffee,
# chelsea and rocket images: pans of up to 60 px and a 10 % zoom stay under 0.10, while
# every cut between two of them scores 0.39 to 0.77.
CUT_HISTOGRAM_BINS = 32
CUT_HISTOGRAM_DISTANCE = 0.3


def _check_same_shape(name: str, a: np.ndarray, b: np.ndarray) -> None:
    if np.shape(a) != np.shape(b):
        raise ValueError(f"{name}: the two images differ in shape: {np.shape(a)} vs {np.shape(b)}")


def _check_rgb(name: str, rgb: np.ndarray) -> None:
    if np.ndim(rgb) != 3 or np.shape(rgb)[2] != 3:
        raise ValueError(f"{name}: expected an HxWx3 RGB array, got shape {np.shape(rgb)}")


def psnr(a: np.ndarray, b: np.ndarray, data_range: float = RGB_DATA_RANGE) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range² / MSE)`` over every sample.

    Identical inputs give ``inf``. Any shape, as long as both match.
    """
    _check_same_shape("psnr", a, b)
    if data_range <= 0:
        raise ValueError(f"psnr: data_range must be > 0, got {data_range}")
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range * data_range / mse)


def psnr_ab(lab_a: np.ndarray, lab_b: np.ndarray) -> float:
    """PSNR of the ab channels of two HxWx3 Lab images, with ``AB_DATA_RANGE`` (255) as peak.

    The luminance is left out: a colorization keeps the input's L, so only ab carries its error.
    """
    for lab in (lab_a, lab_b):
        if np.ndim(lab) != 3 or np.shape(lab)[2] != 3:
            raise ValueError(f"psnr_ab: expected HxWx3 Lab images, got shape {np.shape(lab)}")
    _check_same_shape("psnr_ab", lab_a, lab_b)
    return psnr(np.asarray(lab_a)[..., 1:], np.asarray(lab_b)[..., 1:], AB_DATA_RANGE)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The 1-D normalised Gaussian whose outer product is Wang et al.'s 2-D window."""
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    weights = np.exp(-(offsets ** 2) / (2.0 * sigma * sigma))
    return weights / weights.sum()


def _filter_valid(image: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation keeping only positions where the window fits entirely."""
    out = correlate1d(correlate1d(image, window, axis=0, mode="nearest"), window, axis=1,
                      mode="nearest")
    half = (len(window) - 1) // 2
    return out[half: out.shape[0] - half, half: out.shape[1] - half]


def _ssim_plane(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """Mean SSIM of one channel (Wang et al. 2004, Eq. 13 averaged as in Eq. 17)."""
    window = gaussian_window()
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    mu_x = _filter_valid(x, window)
    mu_y = _filter_valid(y, window)
    # Population (not sample) moments under the Gaussian weights, as in the paper's Eq. 14-16.
    var_x = _filter_valid(x * x, window) - mu_x * mu_x
    var_y = _filter_valid(y * y, window) - mu_y * mu_y
    cov_xy = _filter_valid(x * y, window) - mu_x * mu_y
    numerator = (2.0 * mu_x * mu_y + c1) * (2.0 * cov_xy + c2)
    denominator = (mu_x * mu_x + mu_y * mu_y + c1) * (var_x + var_y + c2)
    return float(np.mean(numerator / denominator))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float = RGB_DATA_RANGE) -> float:
    """Mean structural similarity, computed per RGB channel and averaged over the channels.

    Gaussian 11x11 window, sigma 1.5, K1 = 0.01, K2 = 0.03 (Wang et al. 2004); the mean is over
    positions where the window fits inside the image (no border padding). It is measured on
    RGB and not on luminance because a colorization keeps the input's luminance: SSIM on L
    would be 1 whatever the colours. Inputs HxWx3 (or HxW for one plane), 8-bit scale.
    """
    _check_same_shape("ssim", a, b)
    if np.ndim(a) not in (2, 3):
        raise ValueError(f"ssim: expected HxW or HxWxC images, got shape {np.shape(a)}")
    if min(np.shape(a)[:2]) < SSIM_WINDOW:
        raise ValueError(f"ssim: images must be at least {SSIM_WINDOW}x{SSIM_WINDOW} "
                         f"(the Gaussian window), got shape {np.shape(a)}")
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.ndim == 2:
        return _ssim_plane(x, y, data_range)
    return float(np.mean([_ssim_plane(x[..., c], y[..., c], data_range)
                          for c in range(x.shape[2])]))


def colorfulness(rgb: np.ndarray) -> float:
    """Hasler & Süsstrunk (2003) colourfulness of one HxWx3 RGB image on the 8-bit scale.

    rg = R - G, yb = (R + G) / 2 - B;
    M = sqrt(sd(rg)² + sd(yb)²) + 0.3 sqrt(mean(rg)² + mean(yb)²)
    (population standard deviations over all pixels). Grey images score 0.
    """
    _check_rgb("colorfulness", rgb)
    image = np.asarray(rgb, dtype=np.float64)
    red, green, blue = image[..., 0], image[..., 1], image[..., 2]
    rg = red - green
    yb = 0.5 * (red + green) - blue
    spread = math.sqrt(float(rg.std()) ** 2 + float(yb.std()) ** 2)
    mean = math.sqrt(float(rg.mean()) ** 2 + float(yb.mean()) ** 2)
    return spread + COLORFULNESS_MEAN_WEIGHT * mean


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """HxWx3 RGB (uint8, uint16, or float on the 8-bit scale) -> CIELAB D65 float64."""
    _check_rgb("to_lab", rgb)
    if rgb.dtype == np.uint16:
        unit = to_unit_float(rgb, np.float64)
    else:
        unit = np.asarray(rgb, dtype=np.float64) / RGB_DATA_RANGE
    return rgb2lab(np.clip(unit, 0.0, 1.0))


def warp_error(prev_ab: np.ndarray, cur_ab: np.ndarray, flow: np.ndarray,
               mask: np.ndarray) -> float:
    """Temporal warp error of one pair of frames (paper Eq. 13, after Lai et al., ECCV 2018).

    The ab of frame t is brought back onto frame t-1 along ``flow`` (computed on luminance,
    ``flow = estimate_flow(l_prev, l_cur)`` so that ``warp(cur, flow) ≈ prev``) and compared
    with frame t-1's own ab over the reliable (non-occluded) pixels ``mask``:

        E = sum_p M(p) ||ab_{t-1}(p) - warp(ab_t)(p)||² / sum_p M(p)

    i.e. the squared Euclidean ab distance (Lab units²), averaged over the unmasked pixels.
    A clip's warp error is the mean of E over its consecutive pairs. ``prev_ab``/``cur_ab`` are
    HxWx2, ``flow`` (2, H, W) (row, col), ``mask`` bool HxW (True = reliable).
    """
    from vidcolor.motion.flow import warp

    for name, ab in (("prev_ab", prev_ab), ("cur_ab", cur_ab)):
        if np.ndim(ab) != 3 or np.shape(ab)[2] != 2:
            raise ValueError(f"warp_error: {name} must be HxWx2 ab, got shape {np.shape(ab)}")
    _check_same_shape("warp_error", prev_ab, cur_ab)
    height, width = np.shape(prev_ab)[:2]
    if np.shape(flow) != (2, height, width):
        raise ValueError(f"warp_error: flow must be (2, {height}, {width}), got {np.shape(flow)}")
    if np.shape(mask) != (height, width):
        raise ValueError(f"warp_error: mask must be ({height}, {width}), got {np.shape(mask)}")
    valid = np.asarray(mask, dtype=bool)
    if not valid.any():
        raise ValueError("warp_error: the mask keeps no pixel (every pixel occluded)")
    cur_planes = np.ascontiguousarray(np.moveaxis(np.asarray(cur_ab, dtype=np.float32), 2, 0))
    warped = warp(cur_planes, np.asarray(flow, dtype=np.float32))
    prev_planes = np.moveaxis(np.asarray(prev_ab, dtype=np.float32), 2, 0)
    squared = ((prev_planes.astype(np.float64) - warped) ** 2).sum(axis=0)
    return float(squared[valid].mean())


def luminance_histogram_distance(l0: np.ndarray, l1: np.ndarray,
                                 bins: int = CUT_HISTOGRAM_BINS) -> float:
    """Total-variation distance (0 = same, 1 = disjoint) of two luminance histograms in [0, 1]."""
    _check_same_shape("luminance_histogram_distance", l0, l1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    h0, _ = np.histogram(np.clip(l0, 0.0, 1.0), bins=edges)
    h1, _ = np.histogram(np.clip(l1, 0.0, 1.0), bins=edges)
    return 0.5 * float(np.abs(h0 / h0.sum() - h1 / h1.sum()).sum())


def is_hard_cut(l0: np.ndarray, l1: np.ndarray,
                threshold: float = CUT_HISTOGRAM_DISTANCE) -> bool:
    """True when two consecutive HxW luminance frames ([0, 1]) straddle a hard cut.

    Cheap and global: the luminance histograms' total-variation distance exceeds
    ``threshold``. Motion within a shot barely changes the histogram; a change of scene does.
    Two shots with near-identical tone distributions are missed (their flow then fails the
    forward-backward check on most pixels, which keeps their warp error modest anyway).
    """
    if np.ndim(l0) != 2:
        raise ValueError(f"is_hard_cut: expected HxW luminance, got shape {np.shape(l0)}")
    return luminance_histogram_distance(l0, l1) > threshold
