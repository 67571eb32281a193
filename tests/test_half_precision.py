"""bfloat16 on the CPU: which parts run in bf16, which stay float32, and that it runs end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vidcolor import devices
from vidcolor.engines.devc.engine import DevcEngine
from vidcolor.engines.devc.layers import conv_add_relu, conv_relu, instance_norm
from vidcolor.errors import OptionError
from seeded_weights import seeded_converted

WORKING = (64, 128)  # the smallest devc size class: networks at 32x64, feature grid 8x16
BF16_UNIT_ROUNDOFF = 2.0 ** -8  # round-to-nearest with an 8-bit significand


@pytest.fixture(scope="module")
def engines():
    weights = seeded_converted()
    return (DevcEngine(weights, "cpu", torch.float32),
            DevcEngine(weights, "cpu", torch.float32, autocast_dtype=torch.bfloat16))


def _lab(seed: int, channels: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    lab = torch.rand(1, channels, *WORKING, generator=generator) * 100 - 50
    if channels == 3:
        lab[:, 1:] *= 1.5
    return lab


def test_networks_hold_bf16_weights_except_the_output_head(engines):
    _, half = engines
    assert half.vgg.block1.conv1.weight.dtype == torch.bfloat16
    assert half.correspondence.frame_projection.weight.dtype == torch.bfloat16
    assert half.colorization.enc1.conv1.weight.dtype == torch.bfloat16
    assert half.colorization.head.weight.dtype == torch.float32


def test_vgg_features_stay_within_bf16_rounding_of_float32(engines):
    exact, half = engines
    rgb = torch.rand(1, 3, *WORKING, generator=torch.Generator().manual_seed(1))
    from vidcolor.engines.devc.vgg19 import caffe_preprocess

    for f32, bf16 in zip(exact._features(caffe_preprocess(rgb)), half._features(caffe_preprocess(rgb))):
        assert bf16.dtype == torch.float32  # normalised in float32 for the correlation
        relative = torch.linalg.vector_norm(bf16 - f32) / torch.linalg.vector_norm(f32)
        # 12 convolutions to relu5_2, each rounding its output (and input) once: at worst
        # 2 x 12 x 2^-8 = 9% if every error added up; random errors add in quadrature (~2%).
        assert relative < 2 * 12 * BF16_UNIT_ROUNDOFF


def test_correspondence_and_step_run_in_bf16_with_float32_outputs(engines):
    exact, half = engines
    ref = half.prepare_reference(_lab(2, 3))
    assert ref.embedding.features.dtype == torch.float32  # phi embedded in float32
    frame = _lab(3, 1)
    corr = half.correspond(frame, ref)
    assert corr.warped_ab.dtype == corr.confidence.dtype == torch.float32
    # The argmax warp copies pooled reference colours: each warped value is one of them.
    palette = ref.embedding.colors[1:3]
    warped = corr.warped_ab[0, :, ::4, ::4].flatten(1)
    assert all(bool((palette == warped[:, [k]]).all(dim=0).any()) for k in range(0, warped.shape[1], 7))
    ab, state = half.step(frame, corr, half.initial_state(ref, False))
    assert ab.dtype == state.dtype == torch.float32 and ab.shape == (1, 2, 32, 64)
    assert ab.abs().max() <= 128.0  # tanh(x) * 128


def test_instance_norm_statistics_are_float32_for_bf16_input():
    generator = torch.Generator().manual_seed(4)
    x = (3.0 + torch.randn(2, 8, 64, 64, generator=generator)).bfloat16()
    expected = F.instance_norm(x.float(), eps=1e-5)  # float32 statistics of the same values
    got = instance_norm(x)
    assert got.dtype == torch.bfloat16
    channels_last = instance_norm(x.contiguous(memory_format=torch.channels_last))
    assert channels_last.is_contiguous(memory_format=torch.channels_last)
    for result in (got, channels_last):  # the layout changes the reductions' order only
    # Only the output is rounded to bf16 (half an ulp, 2^-8 relative); bf16 arithmetic past
    # the statistics (ATen's kernel) is off by up to ~3 ulps.
        torch.testing.assert_close(result.float(), expected, rtol=BF16_UNIT_ROUNDOFF, atol=1e-5)


def test_fused_bf16_conv_relu_equals_the_eager_ops():
    conv = torch.nn.Conv2d(8, 16, 3, padding=1).bfloat16()
    x = torch.randn(1, 8, 20, 24).bfloat16()
    with torch.inference_mode():
        fused = conv_relu(conv, x)
        eager = F.relu(F.conv2d(x, conv.weight, conv.bias, padding=1))
    # Same convolution kernel (oneDNN's, or torch's own where oneDNN has no bf16 on this CPU);
    # the ReLU commutes with the final rounding to bf16.
    torch.testing.assert_close(fused.float(), eager.float(), rtol=BF16_UNIT_ROUNDOFF, atol=1e-6)


def test_bf16_conv_add_relu_in_channels_last_is_within_rounding_of_float64():
    generator = torch.Generator().manual_seed(5)
    conv = torch.nn.Conv2d(8, 16, 3, padding=1).bfloat16().to(memory_format=torch.channels_last)
    x = torch.randn(1, 8, 20, 24, generator=generator).bfloat16().contiguous(memory_format=torch.channels_last)
    other = torch.randn(1, 16, 20, 24, generator=generator).bfloat16().contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = conv_add_relu(conv, x, other)
        convolved = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
    assert got.dtype == torch.bfloat16 and got.is_contiguous(memory_format=torch.channels_last)
    exact = F.relu(convolved + other.double())
    # Fused: float32 accumulation (72 terms, ~1e-6 relative) and one rounding of the output.
    # Unfused, the convolution's output is rounded too: at most 2^-8 of |conv| + 2^-8 of |sum|.
    bound = BF16_UNIT_ROUNDOFF * (convolved.abs() + other.double().abs() + exact.abs()) + 1e-6
    assert bool(((got.double() - exact).abs() <= bound).all())


def test_float16_on_a_cpu_is_refused():
    with pytest.raises(OptionError, match="float16 needs a CUDA GPU"):
        DevcEngine(seeded_converted(), "cpu", torch.float32, autocast_dtype=torch.float16)


def test_colorizer_runs_bf16_on_a_native_cpu(devc_weights, monkeypatch):
    from vidcolor import Colorizer

    monkeypatch.setattr(devices, "native_cpu_bf16", lambda: "AVX512-BF16")
    colorizer = Colorizer(engine="devc", device="cpu", precision="bfloat16")
    assert colorizer.autocast == torch.bfloat16
    generator = np.random.default_rng(5)
    frames = [generator.integers(0, 256, (72, 140, 3), dtype=np.uint8) for _ in range(2)]
    ref = generator.integers(0, 256, (80, 120, 3), dtype=np.uint8)
    out = list(colorizer.colorize_frames(frames, ref, preset="official", size=WORKING))
    assert len(out) == 2 and all(o.shape == (*WORKING, 3) and o.dtype == np.uint8 for o in out)
    assert max(np.ptp(o.astype(int), axis=2).max() for o in out) > 0  # some colour came through
