"""color/lab.py against scikit-image (computed here) and round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import color as skcolor

from vidcolor.color.lab import (
    L_MEAN,
    center_lab,
    lab_to_rgb,
    rgb_to_lab,
    uncenter_lab,
)


def _random_rgb(shape, seed=0) -> np.ndarray:
    rgb = np.random.default_rng(seed).random(shape)
    rgb[..., 0, 0, :4] = [0.0, 1.0, 0.02, 0.04045]  # black, white, the linear segment, the knee
    return rgb


def _sk_lab_chw(rgb_chw: np.ndarray) -> np.ndarray:
    return skcolor.rgb2lab(rgb_chw.astype(np.float64), channel_axis=-3)


def test_rgb_to_lab_matches_skimage_float64():
    rgb = _random_rgb((2, 3, 40, 50))
    ours = rgb_to_lab(torch.from_numpy(rgb)).numpy()
    np.testing.assert_allclose(ours, _sk_lab_chw(rgb), rtol=0, atol=1e-10)


def test_rgb_to_lab_float32_within_1e4_of_skimage():
    rgb = _random_rgb((3, 120, 160), seed=1).astype(np.float32)
    ours = rgb_to_lab(torch.from_numpy(rgb))
    assert ours.dtype == torch.float32
    # skimage in float64 on the same float32 values: the accurate answer.
    np.testing.assert_allclose(ours.numpy(), _sk_lab_chw(rgb), rtol=0, atol=1e-4)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-10), (torch.float32, 1e-4)])
def test_lab_to_rgb_clip_matches_skimage_in_and_out_of_gamut(dtype, atol):
    rng = np.random.default_rng(2)
    lab = np.stack([rng.uniform(0, 100, (30, 40)), rng.uniform(-128, 127, (30, 40)),
                    rng.uniform(-128, 127, (30, 40))])
    lab[:, 0, :3] = [[20.0, 5.0, 50.0], [0.0, 0.0, 0.0], [120.0, 90.0, 0.0]]  # negative Z included
    with np.errstate(all="ignore"), pytest.warns(UserWarning):
        expected = skcolor.lab2rgb(lab, channel_axis=0)  # warns about the negative-Z pixels
    ours = lab_to_rgb(torch.from_numpy(lab).to(dtype), clip=True).numpy()
    np.testing.assert_allclose(ours, expected, rtol=0, atol=atol)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 2e-5)])
def test_rgb_lab_rgb_round_trip(dtype, atol):
    # Plain random values: at the exact sRGB knee (0.04045) the standard's two segments disagree
    # by 3e-8, which no implementation can round-trip.
    rgb = torch.from_numpy(np.random.default_rng(3).random((3, 32, 48))).to(dtype)
    np.testing.assert_allclose(lab_to_rgb(rgb_to_lab(rgb)).numpy(), rgb.numpy(), rtol=0, atol=atol)


def test_unclipped_lab_to_rgb_keeps_out_of_gamut_colours():
    lab = torch.tensor([[[[60.0]], [[120.0]], [[-110.0]]]], dtype=torch.float64)  # far out of sRGB
    rgb = lab_to_rgb(lab)
    assert rgb.min() < 0 or rgb.max() > 1
    # Both transfer curves extend past [0, 1] the same way, so the trip back is exact.
    np.testing.assert_allclose(rgb_to_lab(rgb).numpy(), lab.numpy(), atol=1e-9)


def test_any_leading_dimensions_are_kept():
    rgb = torch.rand(2, 1, 3, 5, 6, dtype=torch.float64)
    lab = rgb_to_lab(rgb)
    assert lab.shape == rgb.shape
    np.testing.assert_allclose(lab[1, 0].numpy(), rgb_to_lab(rgb[1, 0]).numpy(), atol=1e-12)


@pytest.mark.parametrize("fn", [rgb_to_lab, lab_to_rgb, center_lab, uncenter_lab])
def test_shape_errors_state_the_shape(fn):
    with pytest.raises(ValueError, match=r"\(4, 5, 6\)"):
        fn(torch.zeros(4, 5, 6))
    with pytest.raises(ValueError, match=r"\(5, 6\)"):
        fn(torch.zeros(5, 6))
    with pytest.raises(TypeError):
        fn(np.zeros((3, 5, 6)))


def test_integer_tensors_are_refused():
    with pytest.raises(TypeError, match="uint8"):
        rgb_to_lab(torch.zeros(3, 4, 4, dtype=torch.uint8))


def test_center_and_uncenter_follow_the_official_normalisation():
    lab = torch.tensor([[[80.0]], [[-20.0]], [[35.0]]])
    centred = center_lab(lab)
    assert centred.flatten().tolist() == [80.0 - L_MEAN, -20.0, 35.0]
    assert torch.equal(uncenter_lab(centred), lab)  # small integers: exact in float32

