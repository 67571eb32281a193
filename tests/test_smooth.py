"""vidcolor.color.smooth: the fast global smoother against OpenCV's output and a dense solve."""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import sparse
from scipy.sparse.linalg import spsolve

from vidcolor.color.smooth import fgs_filter, luminance_guide, normalized_fgs

GOLDEN = Path(__file__).parent / "fixtures" / "golden_modules.npz"
GOLDEN_TOLERANCE = 1.5e-4  # OpenCV float32 vs a re-implementation (REFERENCE.md §7)


def _dense_fgs(image, guide, lam, sigma, attenuation, iterations):
    """Independent formulation: each pass is one sparse (I + lam L) solve over the whole image."""
    channels, height, width = image.shape
    g = guide.astype(np.float64)
    index = np.arange(height * width).reshape(height, width)

    def laplacian(pairs_a, pairs_b, weights):
        n = height * width
        w = sparse.coo_matrix((weights, (pairs_a, pairs_b)), shape=(n, n))
        w = w + w.T
        return sparse.diags(np.asarray(w.sum(axis=1)).ravel()) - w

    horizontal = laplacian(index[:, :-1].ravel(), index[:, 1:].ravel(),
                           np.exp(-np.abs(g[:, 1:] - g[:, :-1]) / sigma).ravel())
    vertical = laplacian(index[:-1, :].ravel(), index[1:, :].ravel(),
                         np.exp(-np.abs(g[1:, :] - g[:-1, :]) / sigma).ravel())
    identity = sparse.identity(height * width)
    out = image.reshape(channels, -1).astype(np.float64).T
    for i in range(iterations):
        current = lam * attenuation ** i
        out = spsolve((identity + current * horizontal).tocsc(), out)
        out = spsolve((identity + current * vertical).tocsc(), out)
    return out.T.reshape(channels, height, width)


@pytest.mark.parametrize("frame", ["frame0", "frame1"])
def test_matches_opencv_fast_global_smoother_golden(frame):
    golden = np.load(GOLDEN)
    # The official script feeds OpenCV the float32 cast of the x1.25 ab (REFERENCE.md §7).
    ab = golden[f"{frame}_ab_up_x1.25"].astype(np.float32)
    out = fgs_filter(ab, golden[f"{frame}_fgs_guide"])
    assert out.dtype == np.float32 and out.shape == ab.shape
    np.testing.assert_allclose(out, golden[f"{frame}_ab_fgs"], rtol=0, atol=GOLDEN_TOLERANCE)


def test_luminance_guide_matches_the_official_truncation():
    golden = np.load(GOLDEN)
    guide = luminance_guide(golden["frame0_lab_full"][0])
    # Exact by construction: elementwise float32 + * / (correctly rounded everywhere), truncated.
    np.testing.assert_array_equal(guide, golden["frame0_fgs_guide"])


@pytest.mark.parametrize("options", [
    dict(),
    dict(lam=30.0, sigma=10.0, lambda_attenuation=0.5, iterations=2),
])
def test_matches_a_dense_sparse_solve(options):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 13, 17)) * 20
    guide = rng.integers(0, 256, size=(13, 17), dtype=np.uint8)
    guide[:, 8:] //= 4  # a strong edge plus noise
    full = dict(lam=500.0, sigma=4.0, lambda_attenuation=0.25, iterations=3) | options
    expected = _dense_fgs(image, guide, full["lam"], full["sigma"],
                          full["lambda_attenuation"], full["iterations"])
    out = fgs_filter(image, guide, **full)
    assert out.dtype == np.float64
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-9)


def test_torch_input_gives_the_numpy_result_with_its_own_dtype():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(2, 20, 30)).astype(np.float32)
    guide = rng.integers(0, 256, size=(20, 30), dtype=np.uint8)
    out = fgs_filter(torch.from_numpy(image), guide)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), fgs_filter(image, guide), atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensor_is_solved_on_the_device():
    rng = np.random.default_rng(2)
    image = rng.normal(size=(2, 20, 30))
    guide = rng.integers(0, 256, size=(20, 30), dtype=np.uint8)
    out = fgs_filter(torch.from_numpy(image).cuda(), guide)
    assert out.device.type == "cuda"
    np.testing.assert_allclose(out.cpu().numpy(), fgs_filter(image, guide), atol=1e-9)


def test_preserves_constants_and_keeps_edges():
    guide = np.full((24, 32), 40, np.uint8)
    guide[:, 16:] = 220
    constant = np.full((1, 24, 32), 7.5, np.float32)
    np.testing.assert_allclose(fgs_filter(constant, guide), constant, atol=1e-4)
    step = np.where(np.arange(32) < 16, -30.0, 30.0)[None, None, :].repeat(24, axis=1)
    smoothed = fgs_filter(step, guide)
    # exp(-180 / 4) ~ 3e-79: the guide's edge stops the smoothing.
    np.testing.assert_allclose(smoothed, step, atol=1e-6)


def test_normalized_fgs_fills_unconfident_pixels_up_to_the_guide_edge():
    height, width = 30, 40
    guide = np.full((height, width), 60, np.uint8)
    guide[:, 20:] = 200
    values = np.zeros((2, height, width))
    values[:, :, :20] = np.array([10.0, -20.0])[:, None, None]
    values[:, :, 20:] = np.array([-35.0, 25.0])[:, None, None]
    confidence = np.zeros((height, width))
    confidence[5, 5] = 1.0    # one confident pixel on each side of the edge
    confidence[25, 35] = 0.5
    filled = normalized_fgs(values * 1.0, confidence, guide)
    np.testing.assert_allclose(filled[:, :, :20], values[:, :, :20], atol=1e-6)
    np.testing.assert_allclose(filled[:, :, 20:], values[:, :, 20:], atol=1e-6)


def test_normalized_fgs_weights_by_confidence():
    guide = np.full((1, 51), 128, np.uint8)  # 10 px from each end to its pixel: symmetric
    values = np.zeros((1, 1, 51))
    values[0, 0, 10], values[0, 0, 40] = 10.0, 40.0
    confidence = np.zeros((1, 51))
    confidence[0, 10], confidence[0, 40] = 3.0, 1.0
    filled = normalized_fgs(values, confidence, guide)[0, 0]
    # Symmetric spread from both ends: the midpoint sees the confidence-weighted mean 17.5.
    np.testing.assert_allclose(filled[25], (3 * 10 + 40) / 4, atol=1e-6)
    assert filled[10] < filled[25] < filled[40]


def test_bad_inputs_raise_with_the_shape_received():
    with pytest.raises(ValueError, match=r"\(4, 5\)"):
        fgs_filter(np.zeros((4, 5)), np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        fgs_filter(np.zeros((1, 4, 5)), np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"\(4, 6\)"):
        fgs_filter(np.zeros((1, 4, 5)), np.zeros((4, 6), np.uint8))
    with pytest.raises(ValueError, match="confidence"):
        normalized_fgs(np.zeros((2, 4, 5)), np.zeros((4, 6)), np.zeros((4, 5), np.uint8))
