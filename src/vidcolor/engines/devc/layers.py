"""Small fused building blocks shared by the three subnets, exact and faster on CPU.

On CPU in float32 and bfloat16 every convolution goes through oneDNN anyway; its fused post-ops
apply the ReLU (or add a tensor, then ReLU) while the output is still in cache, saving one full
pass over each activation, with the same results as conv then ReLU (tested). Elsewhere
(CUDA, float64, autocast) the plain eager ops run.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

INSTANCE_NORM_EPS = 1e-5  # nn.InstanceNorm2d default, affine=False, no running stats

# oneDNN's fused convolution (the op torch.compile's CPU backend emits); absent in builds
# without oneDNN, where the eager ops run instead.
_MKLDNN_POINTWISE = (getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
                     if torch.backends.mkldnn.is_available() else None)


def _onednn_computes_bf16() -> bool:
    """oneDNN's bf16 kernels need AVX-512 (BW, VL, DQ) or AVX-NE-CONVERT; an AVX2-only CPU
    raises on its fused ops, while torch's own convolution still runs bf16 (slowly) there."""
    check = getattr(getattr(torch.ops, "mkldnn", None), "_is_mkldnn_bf16_supported", None)
    return check is not None and bool(check())


FUSED_DTYPES = (torch.float32, torch.bfloat16) if _onednn_computes_bf16() else (torch.float32,)


def _can_fuse(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    return (
        _MKLDNN_POINTWISE is not None
        and x.device.type == "cpu"
        and x.dtype in FUSED_DTYPES
        and conv.weight.dtype == x.dtype
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
        and not torch.is_autocast_enabled("cpu")
        and torch.backends.mkldnn.enabled
        # The fused op has no backward: training (a graph through x or the weight) runs eagerly.
        and not (torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad))
    )


def _conv_args(conv: nn.Conv2d) -> tuple:
    return (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)


def conv_relu(conv: nn.Conv2d, x: torch.Tensor, negative_slope: float = 0.0) -> torch.Tensor:
    """``relu(conv(x))``, or ``leaky_relu(conv(x), negative_slope)``."""
    if _can_fuse(conv, x):
        if negative_slope:
            return _MKLDNN_POINTWISE(x, conv.weight, conv.bias, *_conv_args(conv), "leaky_relu",
                                     [negative_slope], "")
        return _MKLDNN_POINTWISE(x, conv.weight, conv.bias, *_conv_args(conv), "relu", [], "")
    if negative_slope:
        return F.leaky_relu(conv(x), negative_slope, inplace=True)
    return F.relu(conv(x), inplace=True)


def conv_add_relu(conv: nn.Conv2d, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """``relu(conv(x) + other)``: a decoder stage's skip branch plus its upsampled branch."""
    # bf16 only in channels_last: for NCHW input and weights torch falls back to its own
    # kernels, which have no bf16 add_relu (torch 2.14); oneDNN's fused op has. Fused, the
    # bf16 decoder saves an add and a ReLU pass over each large map (~30 ms a frame on AMX).
    fusable_dtype = x.dtype == other.dtype and (
        x.dtype == torch.float32
        or (x.dtype == torch.bfloat16 and x.is_contiguous(memory_format=torch.channels_last)))
    if _can_fuse(conv, x) and fusable_dtype:
        return _MKLDNN_POINTWISE.binary(x, other, conv.weight, conv.bias, *_conv_args(conv),
                                        "add", None, "relu", [], "")
    return F.relu(conv(x) + other, inplace=True)


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` (odd sizes floored) as two elementwise maxima of strided views.

    Same values (a max is exact); on CPU several times faster than the pooling kernel, which
    also computes the argmax indices it does not return.
    """
    height, width = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :height, :width]
    rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


def instance_norm(x: torch.Tensor) -> torch.Tensor:
    """InstanceNorm2d(affine=False): per image and channel, biased variance, eps 1e-5.

    Half-precision input: statistics in float32 and one rounding of the output
    (:func:`_half_instance_norm`).
    """
    if x.dtype in (torch.bfloat16, torch.float16):
        return _half_instance_norm(x)
    return F.instance_norm(x, eps=INSTANCE_NORM_EPS)


def _half_instance_norm(x: torch.Tensor) -> torch.Tensor:
    """Instance norm of bf16/fp16 ``x`` with float32 mean and variance, output in x's dtype.

    ATen's own bf16 kernel is off by up to ~3 output ulps (it works in bf16 past the
    statistics) and returns NCHW for channels_last input. Here the statistics are float32
    reductions, and batch norm in eval mode applies them per image (the layout is kept).
    """
    mean, mean_square = _float32_spatial_moments(x)
    variance = (mean_square - mean * mean).clamp_min_(0.0)  # biased, as InstanceNorm2d
    images = [F.batch_norm(x[b : b + 1], mean[b], variance[b], training=False, eps=INSTANCE_NORM_EPS)
              for b in range(x.shape[0])]
    return images[0] if len(images) == 1 else torch.cat(images)


def _float32_spatial_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C) float32 mean and mean square of ``x`` over H and W.

    On the CPU from a float32 copy seen as (B, positions, C) for channels_last (B, C,
    positions otherwise): reducing a channels_last map over H and W in place is 6-10x slower
    there (~0.1 s of a 0.5 s bf16 frame on AMX). Elsewhere read straight from ``x``, with no
    float32 copy of a large map.
    """
    if x.device.type != "cpu":
        count = x.shape[-2] * x.shape[-1]
        return (x.mean(dim=(2, 3), dtype=torch.float32),
                torch.linalg.vector_norm(x, dim=(2, 3), dtype=torch.float32).square_().div_(count))
    batch, channels = x.shape[:2]
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        flat, positions = x.permute(0, 2, 3, 1).reshape(batch, -1, channels), 1
    else:
        flat, positions = x.reshape(batch, channels, -1), 2
    flat = flat.to(torch.float32, copy=True)  # a copy: squared in place below
    return flat.mean(positions), flat.square_().mean(positions)


PHASES = ((0, 0), (0, 1), (1, 0), (1, 1))  # (row, column) offsets of a x2 upsampling's outputs


def interleave_phases(phases: list[torch.Tensor], memory_format: torch.memory_format | None = None,
                      ) -> torch.Tensor:
    """Four (B, C, h, w) maps -> (B, C, 2h, 2w) with ``out[..., 2i + a, 2j + b] = phases[ab][..., i, j]``.

    One strided copy per phase straight into the output (a stack followed by pixel_shuffle
    would copy everything twice). ``memory_format``: the output's layout, by default the
    phases' own.
    """
    first = phases[0]
    batch, channels, height, width = first.shape
    if memory_format is None:
        channels_last = first.is_contiguous(memory_format=torch.channels_last) and not first.is_contiguous()
    else:
        channels_last = memory_format == torch.channels_last
    if channels_last:
        out = first.new_empty(batch, height, 2, width, 2, channels)
        for (a, b), phase in zip(PHASES, phases):
            out[:, :, a, :, b, :] = phase.permute(0, 2, 3, 1)
        return out.view(batch, 2 * height, 2 * width, channels).permute(0, 3, 1, 2)
    out = first.new_empty(batch, channels, height, 2, width, 2)
    for (a, b), phase in zip(PHASES, phases):
        out[:, :, :, a, :, b] = phase
    return out.view(batch, channels, 2 * height, 2 * width)
