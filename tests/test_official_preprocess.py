"""color/official.py: the official release's quirks, exact against the golden arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import transform as sktransform

from vidcolor.color.lab import lab_to_rgb, rgb_to_lab, uncenter_lab
from vidcolor.color.official import (
    cover_crop,
    fgs_guide,
    official_lab,
    official_lab_to_rgb,
    official_to_rgb_uint8,
)

GOLDEN = Path(__file__).parent / "fixtures" / "golden_modules.npz"
WORKING_SIZE = (80, 160)  # the golden scenario's official image_size


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize("name", ["frame0", "frame1", "ref"])  # frames: crop rows; ref: crop columns
def test_cover_crop_equals_official_centerpad(golden, name):
    out = cover_crop(golden[f"{name}_rgb_raw"], WORKING_SIZE)
    assert out.dtype == np.uint8
    assert np.array_equal(out, golden[f"{name}_rgb_centerpad"])


def _skimage_resize_truncated(rgb, size):
    resized = sktransform.resize(rgb, size, order=1, mode="reflect", preserve_range=True,
                                 anti_aliasing=True)
    return np.floor(resized).astype(np.uint8)  # values are >= 0, so floor == truncation


def test_cover_crop_branches_against_an_independent_plan():
    rng = np.random.default_rng(0)
    tall = rng.integers(0, 256, (300, 100, 3), dtype=np.uint8)  # 3:1, target 1:2 -> fit width
    expected = _skimage_resize_truncated(tall, (int(300 * 64 / 100), 64))
    top = (expected.shape[0] - 32) // 2
    assert np.array_equal(cover_crop(tall, (32, 64)), expected[top : top + 32])

    wide = rng.integers(0, 256, (50, 400, 3), dtype=np.uint8)  # fit height
    expected = _skimage_resize_truncated(wide, (32, int(400 * 32 / 50)))
    left = (expected.shape[1] - 64) // 2
    assert np.array_equal(cover_crop(wide, (32, 64)), expected[:, left : left + 64])

    same_aspect = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    assert np.array_equal(cover_crop(same_aspect, (32, 64)), _skimage_resize_truncated(same_aspect, (32, 64)))
    assert np.array_equal(cover_crop(same_aspect, (64, 128)), same_aspect)  # already the size


def test_cover_crop_truncates_instead_of_rounding():
    # A 2-pixel-wide row averaged to 0.5-ish values: rounding would give 1s, truncation 0s.
    rgb = np.zeros((4, 8, 3), dtype=np.uint8)
    rgb[:, ::2] = 1
    out = cover_crop(rgb, (2, 4))
    assert out.max() == 0


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8),
                                 np.zeros((4, 4, 3), np.uint16), np.zeros((4, 4, 3), np.float32)])
def test_cover_crop_and_lab_refuse_non_rgb8(bad):
    with pytest.raises(ValueError, match="cover_crop"):
        cover_crop(bad, (2, 2))
    with pytest.raises(ValueError, match="official_lab"):
        official_lab(bad)


@pytest.mark.parametrize("name", ["frame0", "frame1", "ref"])
def test_official_lab_and_half_are_exact(golden, name):
    lab = official_lab(golden[f"{name}_rgb_centerpad"])
    assert lab.dtype == torch.float32 and lab.shape == (3, *WORKING_SIZE)
    assert np.array_equal(lab.numpy(), golden[f"{name}_lab_full"])
    # The network input: the float32 tensor promoted to float64, then the official bilinear 0.5.
    half = F.interpolate(lab[None].double(), scale_factor=0.5, mode="bilinear")[0]
    assert np.array_equal(half.numpy(), golden[f"{name}_lab_half"])


@pytest.mark.parametrize("name", ["frame0", "frame1"])
def test_fgs_guide_is_exact(golden, name):
    lightness = torch.from_numpy(golden[f"{name}_lab_full"][:1])
    assert np.array_equal(fgs_guide(lightness), golden[f"{name}_fgs_guide"])
    assert np.array_equal(fgs_guide(lightness.numpy()[0]), golden[f"{name}_fgs_guide"])


@pytest.mark.parametrize("name", ["frame0", "frame1"])
def test_output_conversion_is_exact(golden, name):
    lightness = torch.from_numpy(golden[f"{name}_lab_full"][:1])
    rgb = official_to_rgb_uint8(lightness, golden[f"{name}_ab_fgs"])
    assert rgb.dtype == np.uint8 and rgb.shape == (*WORKING_SIZE, 3)
    assert np.array_equal(rgb, golden[f"{name}_rgb_out"])
    # Without the smoother (wls_filter_on=False): straight from the upsampled ab.
    ab_up = torch.from_numpy(golden[f"{name}_ab_up_x1.25"])
    assert np.array_equal(official_to_rgb_uint8(lightness, ab_up), golden[f"{name}_rgb_out_nowls"])


def test_ab_upsampling_as_the_release_does(golden):
    # pipeline/presets.py composes this step; checked here because it feeds the exact conversion above.
    ab = torch.from_numpy(golden["frame0_ab_pred_half"])[None]
    up = F.interpolate(ab, scale_factor=2, mode="bilinear") * 1.25
    np.testing.assert_allclose(up[0].numpy(), golden["frame0_ab_up_x1.25"], rtol=1e-12, atol=0)


def test_output_conversion_checks_shapes():
    with pytest.raises(ValueError, match=r"\(2, 4, 6\)"):
        official_to_rgb_uint8(torch.zeros(1, 4, 6), torch.zeros(2, 4, 5))
    with pytest.raises(ValueError, match=r"\(2, 4, 6\)"):
        fgs_guide(torch.zeros(2, 4, 6))


def test_cover_crop_matches_the_three_channel_resize_on_random_images():
    # cover_crop resizes channel by channel for speed; the official resizes HxWx3 at once.
    rng = np.random.default_rng(5)
    for trial in range(6):
        h, w = (int(v) for v in rng.integers(30, 160, 2))
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        rgb[: h // 3] = 128  # flat areas: values that land exactly on integers
        size = (16 * int(rng.integers(1, 5)), 32 * int(rng.integers(1, 4)))
        out = cover_crop(rgb, size)
        ratio, target = h / w, size[0] / size[1]
        new = (int(h * size[1] / w), size[1]) if ratio > target else (size[0], int(w * size[0] / h))
        expected = _skimage_resize_truncated(rgb, new)
        top, left = (new[0] - size[0]) // 2, (new[1] - size[1]) // 2
        assert np.array_equal(out, expected[top : top + size[0], left : left + size[1]])


def test_official_lab_to_rgb_reproduces_the_release_exactly(golden):
    half = torch.from_numpy(golden["ref_lab_half"])
    assert np.array_equal(official_lab_to_rgb(uncenter_lab(half)).numpy(), golden["ref_rgb_for_vgg"])


def test_official_lab_to_rgb_differs_from_skimage_where_the_release_does():
    # In gamut, only the hard-coded matrix differs: close to the exact inverse.
    lab = rgb_to_lab(torch.from_numpy(np.random.default_rng(4).random((3, 10, 10))))
    np.testing.assert_allclose(official_lab_to_rgb(lab).numpy(), lab_to_rgb(lab).numpy(), atol=1e-4)
    # A very yellow colour drives fz below 0: the release clamps fz itself (not Z after the cube),
    # so the result equals the same colour with b lowered until fz == 0.
    yellow = torch.tensor([[[10.0]], [[0.0]], [[120.0]]], dtype=torch.float64)
    fz_zero_b = 200.0 * (10.0 + 16.0) / 116.0
    at_fz_zero = torch.tensor([[[10.0]], [[0.0]], [[fz_zero_b]]], dtype=torch.float64)
    assert torch.equal(official_lab_to_rgb(yellow), official_lab_to_rgb(at_fz_zero))
    assert 0.0 <= official_lab_to_rgb(yellow).min() and official_lab_to_rgb(yellow).max() <= 1.0
