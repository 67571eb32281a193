"""color/depth.py: the one uint8 <-> uint16 conversion, checked on every value it can meet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidcolor.color.depth import (
    convert_depth,
    from_unit_tensor,
    full_scale,
    to_8bit_scale,
    to_unit_float,
    to_unit_tensor,
)

ALL_U16 = np.arange(65536, dtype=np.uint16)
ALL_U8 = np.arange(256, dtype=np.uint8)


def test_down_rounds_to_nearest_exactly_for_every_16_bit_value():
    # Independent: exact rational rounding, x * 255 / 65535 = x / 257; no value is a half step
    # (2x = 257(2k+1) has no integer solution x), so round-half rules cannot differ.
    expected = (2 * ALL_U16.astype(np.int64) + 257) // (2 * 257)
    assert np.array_equal(convert_depth(ALL_U16, np.uint8), expected.astype(np.uint8))
    # ... and the float formulas the code used before agree everywhere.
    assert np.array_equal(convert_depth(ALL_U16, np.uint8),
                          np.round(ALL_U16.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8))
    assert np.array_equal(convert_depth(ALL_U16, np.uint8),
                          np.round(ALL_U16.astype(np.float32) / 257.0).astype(np.uint8))


def test_up_is_exact_and_round_trips():
    up = convert_depth(ALL_U8, np.uint16)
    assert up.dtype == np.uint16 and up[-1] == 65535 and up[0] == 0
    assert np.array_equal(up, ALL_U8.astype(np.int64) * 257)
    assert np.array_equal(convert_depth(up, np.uint8), ALL_U8)


def test_same_depth_is_returned_untouched_and_others_refused():
    rgb = np.zeros((2, 2, 3), np.uint8)
    assert convert_depth(rgb, np.uint8) is rgb
    with pytest.raises(ValueError, match="uint8 or uint16"):
        convert_depth(rgb.astype(np.float32), np.uint8)
    with pytest.raises(ValueError, match="uint8 or uint16"):
        full_scale(np.int32)


def test_float_scalings_agree_with_each_other():
    rgb16 = ALL_U16.reshape(256, 256, 1).repeat(3, axis=2)
    assert to_unit_float(rgb16).dtype == np.float32
    np.testing.assert_array_equal(to_unit_float(rgb16, np.float64), rgb16 / 65535.0)
    # 8-bit scale: x * 255 / 65535 in float64, within one rounding of the exact quotient.
    np.testing.assert_allclose(to_8bit_scale(rgb16), rgb16 / 257.0, rtol=2 ** -51, atol=0)  # 2 roundings
    rgb8 = ALL_U8.reshape(16, 16, 1).repeat(3, axis=2)
    assert np.array_equal(to_8bit_scale(rgb8), rgb8.astype(np.float64))
    for rgb in (rgb8, rgb16):
        tensor = to_unit_tensor(rgb)
        assert tensor.shape == (1, 3, *rgb.shape[:2]) and tensor.dtype == torch.float32
        assert np.array_equal(from_unit_tensor(tensor, rgb.dtype), rgb)  # float32 keeps 16 bits
