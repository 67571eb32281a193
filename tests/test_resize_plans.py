"""The default preset's fit-and-pad plan and the guided chroma upsampling."""

import math

import pytest
import torch

from vidcolor.color.resize import (
    DEFAULT_WORKING_AREA,
    crop_content,
    fit_pad,
    fit_pad_image,
    pad_to,
    plan_fit_pad,
)
from vidcolor.color.upsample import guided_coefficients, upsample_rows


def multiple_of_32(h, w):
    return (-(-h // 32) * 32, -(-w // 32) * 32)


@pytest.mark.parametrize("source", [(1080, 1920), (480, 640), (1920, 1080), (2160, 4096)])
def test_plan_keeps_aspect_and_area(source):
    plan = plan_fit_pad(source, multiple_of_32)
    h, w = plan.content
    assert abs(h / w - source[0] / source[1]) < 0.01
    area = min(DEFAULT_WORKING_AREA, source[0] * source[1])
    assert abs(h * w - area) / area < 0.01
    assert plan.working == multiple_of_32(h, w)
    assert all(0 <= p < 32 for p in plan.padding)


def test_small_source_is_not_upscaled():
    plan = plan_fit_pad((48, 64), multiple_of_32)
    assert plan.content == (48, 64)
    assert plan.working == (64, 64)


def test_box_fits_inside():
    plan = plan_fit_pad((1080, 1920), multiple_of_32, box=(176, 320))
    assert plan.content[0] <= 176 and plan.content[1] <= 320
    assert plan.content == (176, 313) or plan.content == (180, 320) or max(
        plan.content[0] / 176, plan.content[1] / 320) == pytest.approx(1, abs=0.01)


def test_fit_pad_then_crop_is_identity_on_content():
    image = torch.rand(1, 3, 50, 70, dtype=torch.float64)
    plan = plan_fit_pad((50, 70), multiple_of_32)
    padded = fit_pad(image, plan)
    assert padded.shape[-2:] == (64, 96)
    assert torch.equal(crop_content(padded, plan), image)
    # reflection: the first padded row mirrors the row above the border
    assert torch.equal(padded[..., 50, :70], image[..., 48, :])
    half = crop_content(padded[..., ::2, ::2], plan, scale=0.5)
    assert half.shape[-2:] == (25, 35)


def test_pad_falls_back_to_replicate_when_too_small():
    image = torch.rand(1, 1, 3, 3)
    padded = pad_to(image, (16, 16))
    assert padded.shape[-2:] == (16, 16)
    assert torch.equal(padded[..., -1, -1], image[..., -1, -1])


def test_reference_fitted_whole():
    ref = torch.rand(1, 3, 100, 300)
    out = fit_pad_image(ref, (64, 96))
    assert out.shape[-2:] == (64, 96)


def guided_upsample(ab_low, luminance, **options):
    """What the default preset does with the guided maps, over the whole picture at once."""
    a, b = guided_coefficients(ab_low, luminance, **options)
    size = tuple(luminance.shape[-2:])
    maps = upsample_rows(torch.cat([a, b]), size, (0, size[0]))
    return maps[:1] * luminance + maps[1:]


def test_guided_coefficients_keep_constant_and_linear_fields():
    luminance = torch.rand(1, 1, 80, 100, dtype=torch.float64)
    low_guide = torch.nn.functional.interpolate(luminance, size=(40, 50), mode="bilinear",
                                                align_corners=False, antialias=True)
    const = torch.full((1, 2, 40, 50), 7.0, dtype=torch.float64)
    a, b = guided_coefficients(const, luminance)
    assert torch.allclose(a, torch.zeros_like(a), atol=1e-12) and torch.allclose(b, const)
    # An exact linear model of the guide, ab = 3 L + 1, is found (a = 3, b = 1 everywhere) and
    # so survives upsampling at full resolution.
    a, b = guided_coefficients(3.0 * low_guide + 1.0, luminance, eps=1e-12)
    assert torch.allclose(a, torch.full_like(a, 3.0), atol=1e-5)
    up = guided_upsample(3.0 * low_guide + 1.0, luminance, eps=1e-12)
    assert torch.allclose(up, 3.0 * luminance + 1.0, atol=1e-4)


def test_guided_upsample_follows_luminance_edge():
    # A vertical luminance edge at column 33; the low-res chroma has its edge blurred over
    # a 4-pixel cell. After guided upsampling the chroma step sits at the luminance edge.
    H, W = 32, 64
    lum = torch.zeros(1, 1, H, W, dtype=torch.float64)
    lum[..., 33:] = 1.0
    ab_full = torch.where(lum > 0.5, 40.0, -40.0).repeat(1, 2, 1, 1)
    ab_low = torch.nn.functional.avg_pool2d(ab_full, 4)
    up = guided_upsample(ab_low, lum)
    bilinear = torch.nn.functional.interpolate(ab_low, size=(H, W), mode="bilinear",
                                               align_corners=False)
    err_guided = (up - ab_full).abs().mean()
    err_bilinear = (bilinear - ab_full).abs().mean()
    assert err_guided < 0.5 * err_bilinear
    assert math.isfinite(float(err_guided))


def test_upsample_rows_equals_interpolate_on_any_strip():
    from vidcolor.color.upsample import upsample_rows

    maps = torch.rand(2, 2, 7, 9, dtype=torch.float64)
    full = torch.nn.functional.interpolate(maps, size=(30, 41), mode="bilinear",
                                           align_corners=False)
    assert torch.allclose(upsample_rows(maps, (30, 41), (0, 30)), full, atol=1e-12)
    assert torch.allclose(upsample_rows(maps, (30, 41), (11, 17)), full[..., 11:17, :], atol=1e-12)
