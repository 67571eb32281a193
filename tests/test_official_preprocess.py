"""color/official.py: the official release's quirks, exact against the golden arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import color as skcolor
from skimage import transform as sktransform

from tolerance import F64_EPS, UINT8_TOP, assert_close, assert_truncated_close
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
# Resizing: up to ~100 rounded multiply-adds (two Gaussian passes, then 2x2 bilinear) on values
# below 256, each off by half an ulp of 256, summed in an order that depends on the kernel.
NEAR_RESIZE = 256 * UINT8_TOP * F64_EPS
# lab2rgb x 255: ~10 roundings (cube, 3x3 matrix, pow) plus 1-2 ulps of the vector pow kernel.
NEAR_TO_RGB = 32 * UINT8_TOP * F64_EPS
# Lab in float32: skimage's float64 result may move a few float64 ulps between processors,
# which can flip the float32 cast by one ulp; L - 50 in float32 rounds once more. One float32
# ulp at the top of the Lab range (|Lab| < 128) for each.
LAB32_TOL = 2 * float(np.spacing(np.float32(128)))


@pytest.fixture(scope="module")
def golden():
    with np.load(GOLDEN) as data:
        return {key: data[key] for key in data.files}


def _cover_plan(h, w, size):
    """CenterPad's resized shape and crop offsets, from REFERENCE.md §2.1 (cover, then centre)."""
    ratio, target = h / w, size[0] / size[1]
    if ratio > target:
        new = (int(h * size[1] / w), size[1])
    elif ratio < target:
        new = (size[0], int(w * size[0] / h))
    else:
        new = (int(size[0]), int(w * size[0] / h))
    return new, (new[0] - size[0]) // 2, (new[1] - size[1]) // 2


def _skimage_resize_float(rgb, size):
    """The official resize of the whole HxWx3 array, before the uint8 truncation."""
    return sktransform.resize(rgb, size, order=1, mode="reflect", preserve_range=True,
                              anti_aliasing=True)


def _cover_crop_float(rgb, size):
    new, top, left = _cover_plan(*rgb.shape[:2], size)
    return _skimage_resize_float(rgb, new)[top : top + size[0], left : left + size[1]]


def assert_resized_close(out, expected, before_truncation, max_fraction=0.01):
    assert out.dtype == np.uint8
    assert_truncated_close(out, expected, before_truncation, NEAR_RESIZE, max_fraction)


@pytest.mark.parametrize("name", ["frame0", "frame1", "ref"])  # frames: crop rows; ref: crop columns
def test_cover_crop_equals_official_centerpad(golden, name):
    raw = golden[f"{name}_rgb_raw"]
    out = cover_crop(raw, WORKING_SIZE)
    assert_resized_close(out, golden[f"{name}_rgb_centerpad"], _cover_crop_float(raw, WORKING_SIZE))


def _skimage_resize_truncated(rgb, size):
    resized = _skimage_resize_float(rgb, size)
    return np.floor(resized).astype(np.uint8), resized  # values are >= 0: floor == truncation


def test_cover_crop_branches_against_an_independent_plan():
    rng = np.random.default_rng(0)
    tall = rng.integers(0, 256, (300, 100, 3), dtype=np.uint8)  # 3:1, target 1:2 -> fit width
    expected, value = _skimage_resize_truncated(tall, (int(300 * 64 / 100), 64))
    top = (expected.shape[0] - 32) // 2
    assert_resized_close(cover_crop(tall, (32, 64)), expected[top : top + 32], value[top : top + 32])

    wide = rng.integers(0, 256, (50, 400, 3), dtype=np.uint8)  # fit height
    expected, value = _skimage_resize_truncated(wide, (32, int(400 * 32 / 50)))
    left = (expected.shape[1] - 64) // 2
    assert_resized_close(cover_crop(wide, (32, 64)), expected[:, left : left + 64],
                         value[:, left : left + 64])

    same_aspect = rng.integers(0, 256, (64, 128, 3), dtype=np.uint8)
    assert_resized_close(cover_crop(same_aspect, (32, 64)), *_skimage_resize_truncated(same_aspect, (32, 64)))
    assert np.array_equal(cover_crop(same_aspect, (64, 128)), same_aspect)  # already the size: a copy


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
    assert_close(lab, golden[f"{name}_lab_full"], LAB32_TOL)
    # The network input: the float32 tensor promoted to float64, then the official bilinear 0.5
    # (2x2 means with weights 1/4: the input's error does not grow).
    half = F.interpolate(lab[None].double(), scale_factor=0.5, mode="bilinear")[0]
    assert_close(half, golden[f"{name}_lab_half"], LAB32_TOL)


@pytest.mark.parametrize("name", ["frame0", "frame1"])
def test_fgs_guide_is_exact(golden, name):
    lightness = torch.from_numpy(golden[f"{name}_lab_full"][:1])
    # Exact by construction: elementwise float32 + * / (correctly rounded everywhere), truncated.
    assert np.array_equal(fgs_guide(lightness), golden[f"{name}_fgs_guide"])
    assert np.array_equal(fgs_guide(lightness.numpy()[0]), golden[f"{name}_fgs_guide"])


@pytest.mark.parametrize("name", ["frame0", "frame1"])
def test_output_conversion_is_exact(golden, name):
    lightness = torch.from_numpy(golden[f"{name}_lab_full"][:1])
    rgb = official_to_rgb_uint8(lightness, golden[f"{name}_ab_fgs"])
    assert rgb.dtype == np.uint8 and rgb.shape == (*WORKING_SIZE, 3)
    assert_truncated_close(rgb, golden[f"{name}_rgb_out"],
                           _rgb_before_truncation(lightness, golden[f"{name}_ab_fgs"]), NEAR_TO_RGB)
    # Without the smoother (wls_filter_on=False): straight from the upsampled ab.
    ab_up = golden[f"{name}_ab_up_x1.25"]
    assert_truncated_close(official_to_rgb_uint8(lightness, torch.from_numpy(ab_up)),
                           golden[f"{name}_rgb_out_nowls"], _rgb_before_truncation(lightness, ab_up),
                           NEAR_TO_RGB)


def _rgb_before_truncation(lightness, ab):
    """x255 RGB of REFERENCE.md §7.4 before ``astype(uint8)``, to locate near-integer values."""
    lab = np.concatenate(((lightness.numpy() + np.float32(50.0)), ab)).astype(np.float64)
    return np.clip(skcolor.lab2rgb(lab.transpose(1, 2, 0)), 0.0, 1.0) * 255.0


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
        new, top, left = _cover_plan(h, w, size)
        expected, value = _skimage_resize_truncated(rgb, new)
        window = np.s_[top : top + size[0], left : left + size[1]]
        # The flat third lands on integers: every value there is near one, so no count bound.
        assert_resized_close(out, expected[window], value[window], max_fraction=1.0)


# A float64 chain of ~10 roundings (cube, 3x3 matrix, pow(1/2.4)) on values in [0, 1], whose
# vector pow kernel differs by 1-2 ulps between processors (measured: 1 ulp on Intel AVX-512).
OFFICIAL_RGB_TOL = 16 * F64_EPS


def test_official_lab_to_rgb_reproduces_the_release(golden):
    half = torch.from_numpy(golden["ref_lab_half"])
    assert_close(official_lab_to_rgb(uncenter_lab(half)), golden["ref_rgb_for_vgg"], OFFICIAL_RGB_TOL)


def test_official_lab_to_rgb_differs_from_skimage_where_the_release_does():
    # In gamut, only the hard-coded matrix differs: close to the exact inverse.
    lab = rgb_to_lab(torch.from_numpy(np.random.default_rng(4).random((3, 10, 10))))
    np.testing.assert_allclose(official_lab_to_rgb(lab).numpy(), lab_to_rgb(lab).numpy(), atol=1e-4)
    # A very yellow colour drives fz below 0: the release clamps fz itself (not Z after the cube),
    # so the result equals the same colour with b lowered until fz == 0.
    yellow = torch.tensor([[[10.0]], [[0.0]], [[120.0]]], dtype=torch.float64)
    fz_zero_b = 200.0 * (10.0 + 16.0) / 116.0
    at_fz_zero = torch.tensor([[[10.0]], [[0.0]], [[fz_zero_b]]], dtype=torch.float64)
    # Exact by construction: both give fz == 0.0 (correctly rounded +-*/), then the same kernel.
    assert torch.equal(official_lab_to_rgb(yellow), official_lab_to_rgb(at_fz_zero))
    assert 0.0 <= official_lab_to_rgb(yellow).min() and official_lab_to_rgb(yellow).max() <= 1.0
