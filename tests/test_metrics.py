"""Metrics against hand computations, scikit-image, and synthetic motion with known flow."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage import data
from skimage.color import rgb2lab
from skimage.metrics import structural_similarity

from vidcolor.eval import metrics
from vidcolor.motion.flow import consistency_mask, estimate_flow


# --- PSNR ------------------------------------------------------------------------------------

def test_psnr_hand_computed():
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 10  # one sample off by 10 among 12: MSE = 100 / 12
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / (100 / 12)))
    assert metrics.psnr(a, b, data_range=1.0) == pytest.approx(10 * math.log10(12 / 100))


def test_psnr_identical_is_infinite_and_shapes_are_checked():
    a = np.full((4, 5, 3), 7, np.uint8)
    assert metrics.psnr(a, a) == math.inf
    with pytest.raises(ValueError, match=r"\(4, 5, 3\) vs \(5, 4, 3\)"):
        metrics.psnr(a, np.zeros((5, 4, 3)))


def test_psnr_does_not_wrap_around_uint8():
    # 0 - 255 in uint8 would wrap to 1; the metric must see a difference of 255.
    a = np.zeros((1, 1, 3), np.uint8)
    b = np.full((1, 1, 3), 255, np.uint8)
    assert metrics.psnr(a, b) == pytest.approx(0.0)


def test_psnr_ab_ignores_luminance_and_uses_255_range():
    lab = np.zeros((3, 4, 3))
    lab[..., 0] = 50.0
    other = lab.copy()
    other[..., 0] = 80.0  # L differs only: ab identical
    assert metrics.psnr_ab(lab, other) == math.inf
    other[..., 1] += 5.0  # a off by 5 everywhere, b exact: MSE over the two planes = 25 / 2
    assert metrics.psnr_ab(lab, other) == pytest.approx(10 * math.log10(255 ** 2 / 12.5))


# --- SSIM ------------------------------------------------------------------------------------

def test_ssim_of_constant_planes_is_the_luminance_term():
    # No variance: SSIM reduces to (2 mu_x mu_y + C1) / (mu_x² + mu_y² + C1), C1 = (0.01 * 255)².
    a = np.full((12, 13), 100.0)
    b = np.full((12, 13), 120.0)
    c1 = (0.01 * 255) ** 2
    assert metrics.ssim(a, b) == pytest.approx((2 * 100 * 120 + c1) / (100 ** 2 + 120 ** 2 + c1))


def test_ssim_single_window_by_hand():
    # An 11x11 image holds exactly one window position: the explicit weighted sums below are
    # Wang et al.'s Eq. 14-16 with the 2-D Gaussian w(i, j) ∝ exp(-((i-5)² + (j-5)²) / 4.5).
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (11, 11))
    y = np.clip(x + rng.normal(0, 30, (11, 11)), 0, 255)
    i, j = np.mgrid[0:11, 0:11]
    w = np.exp(-((i - 5.0) ** 2 + (j - 5.0) ** 2) / (2 * 1.5 ** 2))
    w /= w.sum()
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * (x - mx) ** 2).sum(), (w * (y - my) ** 2).sum()
    cxy = (w * (x - mx) * (y - my)).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    assert metrics.ssim(x, y) == pytest.approx(expected, rel=1e-9)


def test_ssim_rgb_matches_scikit_image():
    rng = np.random.default_rng(2)
    a = data.astronaut()[100:164, 150:230]
    b = np.clip(a + rng.normal(0, 15, a.shape), 0, 255).astype(np.uint8)
    expected = structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=255,
                                     channel_axis=-1)
    assert metrics.ssim(a, b) == pytest.approx(expected, abs=1e-9)
    assert metrics.ssim(a, a) == pytest.approx(1.0)


def test_ssim_rejects_images_smaller_than_the_window():
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim(np.zeros((10, 40, 3)), np.zeros((10, 40, 3)))


# --- colourfulness ---------------------------------------------------------------------------

def test_colorfulness_of_grey_is_zero():
    grey = np.repeat(data.camera()[:50, :60, None], 3, axis=2)
    assert metrics.colorfulness(grey) == pytest.approx(0.0)


def test_colorfulness_uniform_colour_is_the_mean_term():
    image = np.empty((4, 6, 3), np.uint8)
    image[...] = (200, 50, 0)  # rg = 150, yb = 125, no spread
    assert metrics.colorfulness(image) == pytest.approx(0.3 * math.hypot(150, 125))


def test_colorfulness_half_red_half_blue():
    image = np.zeros((4, 8, 3), np.uint8)
    image[:, :4, 0] = 255  # red:  rg = 255, yb = 127.5
    image[:, 4:, 2] = 255  # blue: rg = 0,   yb = -255
    sd = math.hypot(255 / 2, (127.5 + 255) / 2)  # two equal halves: sd = |difference| / 2
    mean = math.hypot(255 / 2, (127.5 - 255) / 2)
    assert metrics.colorfulness(image) == pytest.approx(sd + 0.3 * mean)


def test_colorfulness_grows_with_saturation():
    image = data.astronaut()[::4, ::4].astype(np.float64)
    grey = image.mean(axis=2, keepdims=True)
    duller = grey + 0.5 * (image - grey)
    assert metrics.colorfulness(duller) == pytest.approx(0.5 * metrics.colorfulness(image))


# --- Lab ---------------------------------------------------------------------------------------

def test_to_lab_matches_scikit_image_for_8_and_16_bit():
    rgb8 = data.astronaut()[:20, :30]
    expected = rgb2lab(rgb8)
    np.testing.assert_allclose(metrics.to_lab(rgb8), expected, atol=1e-9)
    rgb16 = rgb8.astype(np.uint16) * 257  # same picture on the 16-bit scale
    np.testing.assert_allclose(metrics.to_lab(rgb16), expected, atol=1e-9)


# --- warp error ----------------------------------------------------------------------------

def _view(image: np.ndarray, row: int, col: int, size=(96, 128)) -> np.ndarray:
    return image[row: row + size[0], col: col + size[1]]


def _ab(rgb: np.ndarray) -> np.ndarray:
    return rgb2lab(rgb)[..., 1:]


SCENE = data.astronaut()


def test_warp_error_is_zero_for_a_pure_translation_with_its_exact_flow():
    prev = _view(SCENE, 200, 150)
    cur = _view(SCENE, 197, 155)  # the camera moved: cur(p) = scene(p + (197, 155))
    # warp(cur, flow)(p) = cur(p + flow) must equal prev(p) = scene(p + (200, 150)).
    flow = np.empty((2, 96, 128), np.float32)
    flow[0], flow[1] = 200 - 197, 150 - 155
    rows, cols = np.mgrid[0:96, 0:128]
    inside = (rows + flow[0] <= 95) & (cols + flow[1] >= 0)
    error = metrics.warp_error(_ab(prev), _ab(cur), flow, inside)
    assert error == pytest.approx(0.0, abs=1e-8)


def test_warp_error_measures_flicker_as_mean_squared_ab_distance():
    prev = _ab(_view(SCENE, 200, 150))
    still = np.zeros((2, 96, 128), np.float32)
    everywhere = np.ones((96, 128), bool)
    shifted = prev + np.array([3.0, -4.0])  # a global colour jump of length 5
    assert metrics.warp_error(prev, shifted, still, everywhere) == pytest.approx(25.0, rel=1e-5)
    rng = np.random.default_rng(3)
    sigma = 4.0
    noisy = prev + rng.normal(0, sigma, prev.shape)
    # Independent noise on both ab channels: E ≈ 2 sigma².
    assert metrics.warp_error(prev, noisy, still, everywhere) == pytest.approx(2 * sigma ** 2,
                                                                            rel=0.05)
    half = np.zeros((96, 128), bool)
    half[:, :64] = True
    partly = prev.copy()
    partly[:, 64:] += 100.0  # the change lies entirely outside the mask
    assert metrics.warp_error(prev, partly, still, half) == pytest.approx(0.0, abs=1e-8)


def test_warp_error_with_estimated_flow_zero_on_translation_positive_with_flicker():
    rng = np.random.default_rng(4)
    frames = [_view(SCENE, 120 + 2 * t, 140 + 3 * t) for t in range(3)]
    labs = [rgb2lab(f) for f in frames]
    clean, flicker = [], []
    for t in (1, 2):
        l_prev = (labs[t - 1][..., 0] / 100).astype(np.float32)
        l_cur = (labs[t][..., 0] / 100).astype(np.float32)
        forward = estimate_flow(l_prev, l_cur)
        reliable = consistency_mask(forward, estimate_flow(l_cur, l_prev))
        assert reliable.mean() > 0.8
        clean.append(metrics.warp_error(labs[t - 1][..., 1:], labs[t][..., 1:], forward, reliable))
        noisy_cur = labs[t][..., 1:] + rng.normal(0, 3.0, (96, 128, 2))
        flicker.append(metrics.warp_error(labs[t - 1][..., 1:], noisy_cur, forward, reliable))
    assert max(clean) < 2.0  # ~0 up to flow error on sub-pixel texture
    # Flicker of sd 3 per channel adds up to 2 * 3² = 18 (less where bilinear sampling at
    # sub-pixel flow averages the noise of neighbouring pixels).
    assert min(flicker) > 3.0 ** 2
    assert min(flicker) > 20 * max(clean)


def test_warp_error_checks_its_inputs():
    ab = np.zeros((8, 9, 2))
    flow = np.zeros((2, 8, 9), np.float32)
    with pytest.raises(ValueError, match=r"flow must be \(2, 8, 9\)"):
        metrics.warp_error(ab, ab, np.zeros((2, 9, 8)), np.ones((8, 9), bool))
    with pytest.raises(ValueError, match="no pixel"):
        metrics.warp_error(ab, ab, flow, np.zeros((8, 9), bool))
    with pytest.raises(ValueError, match="HxWx2"):
        metrics.warp_error(np.zeros((8, 9, 3)), np.zeros((8, 9, 3)), flow, np.ones((8, 9), bool))


# --- hard cuts -------------------------------------------------------------------------------

def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb2lab(rgb)[..., 0] / 100


def test_histogram_distance_bounds():
    dark = np.full((10, 10), 0.1)
    bright = np.full((10, 10), 0.9)
    assert metrics.luminance_histogram_distance(dark, dark) == 0.0
    assert metrics.luminance_histogram_distance(dark, bright) == pytest.approx(1.0)


def test_hard_cut_detected_between_scenes_not_within_a_pan():
    shot_a = [_luminance(_view(SCENE, 150, 100 + 8 * t)) for t in range(3)]
    shot_b = _luminance(_view(data.coffee(), 150, 200))
    assert not metrics.is_hard_cut(shot_a[0], shot_a[1])
    assert not metrics.is_hard_cut(shot_a[0], shot_a[2])
    assert metrics.is_hard_cut(shot_a[2], shot_b)
