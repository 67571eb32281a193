"""vidcolor.motion.flow: TV-L1 and OpenCV flows on known motions, warp against scikit-image,
occlusion check."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import transform

from vidcolor.engines.classic.colorize import FusionSettings, chain_flow
from vidcolor.motion.flow import (
    consistency_mask,
    dis_flow,
    estimate_flow,
    farneback_flow,
    flow_grid_size,
    remap,
    warp,
)


def _texture(height, width, seed=0):
    """Smooth random texture in [0, 1]: gradients everywhere, so flow is well posed."""
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.random((height, width)), 3.0)
    noise -= noise.min()
    return (noise / noise.max()).astype(np.float32)


def _skimage_warp(image, flow):
    rows, cols = np.mgrid[: flow.shape[1], : flow.shape[2]]
    coords = np.stack([rows + flow[0], cols + flow[1]])
    return transform.warp(image.astype(np.float64), coords, order=1, mode="edge")


@pytest.mark.parametrize("shift", [(3.0, -5.0), (-1.5, 2.25)])
def test_estimate_flow_recovers_a_translation(shift):
    reference = _texture(120, 160)
    # moving[p + shift] = reference[p], so the flow on the reference grid is +shift.
    moving = ndimage.shift(reference, shift, order=3, mode="nearest").astype(np.float32)
    flow = estimate_flow(reference, moving)
    assert flow.shape == (2, 120, 160) and flow.dtype == np.float32
    interior = flow[:, 15:-15, 15:-15]
    np.testing.assert_allclose(np.median(interior, axis=(1, 2)), shift, atol=0.15)
    assert np.percentile(np.abs(interior[0] - shift[0]), 90) < 0.5
    assert np.percentile(np.abs(interior[1] - shift[1]), 90) < 0.5
    # skimage's convention: warping the moving image with the flow gives back the reference.
    error_before = np.abs(moving - reference)[15:-15, 15:-15].mean()
    error_after = np.abs(warp(moving, flow) - reference)[15:-15, 15:-15].mean()
    assert error_after < 0.2 * error_before


def test_estimate_flow_on_a_reduced_grid_is_rescaled():
    reference = _texture(200, 400, seed=1)
    moving = ndimage.shift(reference, (2.0, 6.0), order=3, mode="nearest").astype(np.float32)
    assert flow_grid_size(200, 400, max_side=100) == (50, 100)
    flow = estimate_flow(reference, moving, max_side=100)
    assert flow.shape == (2, 200, 400)
    np.testing.assert_allclose(np.median(flow[:, 30:-30, 30:-30], axis=(1, 2)), (2.0, 6.0),
                               atol=0.3)


@pytest.mark.parametrize("method, shift", [
    (dis_flow, (3.0, -5.0)),
    (dis_flow, (12.0, 9.0)),  # DIS's pyramid finds large jumps (Farneback's 3 levels do not)
    (lambda a, b: dis_flow(a, b, finest_scale=0), (3.0, -5.0)),  # patches at full resolution
    # the classic engine's chain flow: full resolution, every 4 pixels, 12 descent steps
    (lambda a, b: chain_flow(a, b, FusionSettings()), (12.0, 9.0)),
    (farneback_flow, (3.0, -5.0)),
])
def test_opencv_flows_follow_the_same_convention(method, shift):
    reference = _texture(120, 160, seed=7)
    moving = ndimage.shift(reference, shift, order=3, mode="nearest").astype(np.float32)
    flow = method(reference, moving)
    assert flow.shape == (2, 120, 160) and flow.dtype == np.float32
    # 8-bit input quantises the texture's gradients: a tenth of a pixel is plenty.
    np.testing.assert_allclose(np.median(flow[:, 25:-25, 25:-25], axis=(1, 2)), shift,
                               atol=0.1)


def test_dis_flow_applies_its_solver_overrides():
    reference = _texture(120, 160, seed=7)
    moving = ndimage.shift(reference, (3.0, -5.0), order=3, mode="nearest").astype(np.float32)
    preset = dis_flow(reference, moving, finest_scale=0)
    # Another solver moves the flow by ~0.005-0.01 px on average (measured); float32 rounding
    # of a few-pixel flow is ~1e-6 px, so 1e-3 px separates the two.
    for override in (dict(patch_stride=4), dict(descent_iterations=12)):
        changed = dis_flow(reference, moving, finest_scale=0, **override)
        assert np.abs(changed - preset).mean() > 1e-3, override


def test_dis_flow_rejects_an_unknown_preset():
    image = _texture(32, 32)
    with pytest.raises(ValueError, match="preset"):
        dis_flow(image, image, preset="slowest")


def test_identical_images_give_zero_flow():
    image = _texture(64, 80, seed=2)
    flow = estimate_flow(image, image)
    assert np.abs(flow).max() < 1e-3


@pytest.mark.parametrize("shape", [(37, 53), (3, 37, 53)])
def test_warp_matches_skimage_bilinear_edge_mode(shape):
    rng = np.random.default_rng(3)
    image = rng.random(shape).astype(np.float64)
    flow = (rng.normal(size=(2, 37, 53)) * 6.0).astype(np.float64)  # many samples off the edge
    ours = warp(image, flow)
    assert ours.shape == image.shape and ours.dtype == image.dtype
    if image.ndim == 2:
        expected = _skimage_warp(image, flow)
    else:
        expected = np.stack([_skimage_warp(channel, flow) for channel in image])
    np.testing.assert_allclose(ours, expected, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_remap_matches_warp_to_its_position_quantisation(dtype):
    rng = np.random.default_rng(4)
    image = rng.random((5, 37, 53)).astype(dtype)  # 5 channels: more than one OpenCV call
    flow = (rng.normal(size=(2, 37, 53)) * 6.0).astype(np.float32)  # samples off the edge too
    ours = remap(image, flow)
    assert ours.shape == image.shape and ours.dtype == dtype
    # OpenCV quantises each sub-pixel position to 1/32 px, so a bilinear sample moves by at
    # most 1/32 of the largest step between neighbours (here < 1) in each direction.
    np.testing.assert_allclose(ours, warp(image, flow.astype(dtype)), atol=2 / 32, rtol=0)
    # An integer shift is exact.
    shift = np.zeros((2, 37, 53), np.float32)
    shift[1] = 3.0
    np.testing.assert_array_equal(remap(image, shift)[:, :, :-3], image[:, :, 3:])


def test_warp_accepts_batched_torch_tensors():
    rng = np.random.default_rng(4)
    image = rng.random((2, 2, 20, 30)).astype(np.float32)
    flow = (rng.normal(size=(2, 2, 20, 30)) * 3).astype(np.float32)
    ours = warp(torch.from_numpy(image), torch.from_numpy(flow))
    assert isinstance(ours, torch.Tensor) and ours.shape == (2, 2, 20, 30)
    for n in range(2):
        np.testing.assert_allclose(ours[n].numpy(), warp(image[n], flow[n]), atol=1e-6)


def test_warp_by_integer_shift_is_a_shifted_copy():
    image = np.arange(6 * 7, dtype=np.float32).reshape(6, 7)
    flow = np.zeros((2, 6, 7), np.float32)
    flow[0], flow[1] = 1.0, -2.0
    out = warp(image, flow)
    # float32 grid normalisation rounds sample positions by ~1e-6 px.
    np.testing.assert_allclose(out[:-1, 2:], image[1:, :-2], atol=1e-4)
    np.testing.assert_allclose(out[-1, 2:], image[-1, :-2], atol=1e-4)  # clamped at the edge


def test_nearest_warp_never_blends_neighbours():
    image = np.arange(6 * 7, dtype=np.float32).reshape(6, 7)
    flow = np.full((2, 6, 7), 0.3, np.float32)
    flow[1] = 0.7
    out = warp(image, flow, mode="nearest")
    # p + (0.3, 0.7) rounds to p + (0, 1): each output is one input value, unmixed.
    np.testing.assert_array_equal(out[:, :-1], image[:, 1:])


def test_consistency_mask_accepts_a_consistent_translation_and_flags_the_rest():
    height, width = 30, 40
    fwd = np.zeros((2, height, width), np.float32)
    fwd[1] = 3.0
    bwd = -fwd
    mask = consistency_mask(fwd, bwd)
    assert mask.dtype == bool and mask.shape == (height, width)
    # p + (0, 3) leaves the image for the last 3 columns: nothing to carry there.
    assert mask[:, : width - 3].all() and not mask[:, width - 3 :].any()
    # A backward flow that disagrees by 4 px in a block marks the pixels that land in it.
    bwd_bad = bwd.copy()
    bwd_bad[0, 10:20, 20:30] += 4.0
    mask_bad = consistency_mask(fwd, bwd_bad)
    assert not mask_bad[10:20, 17:27].any()
    assert mask_bad[:10, : width - 3].all() and mask_bad[20:, : width - 3].all()


def test_consistency_mask_on_estimated_flows_with_an_occluding_square():
    background = _texture(96, 128, seed=5)
    square = _texture(24, 24, seed=6) * 0.5 + 0.5
    first, second = background.copy(), background.copy()
    first[36:60, 40:64] = square
    second[36:60, 52:76] = square  # the square moves 12 px right over a still background
    fwd, bwd = estimate_flow(first, second), estimate_flow(second, first)
    mask = consistency_mask(fwd, bwd)
    assert mask[5:30, 5:-5].mean() > 0.95  # still background far from the square
    # Background of `first` that the square covers in `second` has no match there.
    assert mask[40:56, 66:74].mean() < 0.5


def test_bad_inputs_raise_with_the_shape_received():
    with pytest.raises(ValueError, match=r"\(3, 4, 5\)"):
        estimate_flow(np.zeros((3, 4, 5), np.float32), np.zeros((3, 4, 5), np.float32))
    with pytest.raises(ValueError, match="differ"):
        estimate_flow(np.zeros((4, 5), np.float32), np.zeros((4, 6), np.float32))
    with pytest.raises(ValueError, match=r"\(2, 4, 6\)"):
        warp(np.zeros((4, 5), np.float32), np.zeros((2, 4, 6), np.float32))
    with pytest.raises(ValueError, match="flow_bwd"):
        consistency_mask(np.zeros((2, 4, 5), np.float32), np.zeros((4, 5), np.float32))
