"""Colorization subnet (the official ``ColorVidNet(7)``, REFERENCE.md §5).

A U-Net: four encoder stages (3x3 convs + ReLU, instance norm, a learned 1x1 depthwise stride-2
subsampler between stages), two dilated stages and one plain stage at 1/8, then three decoder
stages that upsample by nearest x2 + 3x3 conv and add a 3x3 conv of the matching encoder
output. Input: the 7 channels of :data:`INPUT_CHANNELS`; output: ab in Lab units,
``tanh(x) * 128``.

Speed without changing the arithmetic's meaning: "nearest x2 then 3x3 conv" equals four 2x2
convs on the low-resolution input, one per output phase (:class:`UpsampleConv`), which is
2.25x fewer multiply-adds for the same result up to summation order.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vidcolor.engines.devc.layers import PHASES, conv_add_relu, conv_relu, instance_norm, interleave_phases

# The 7 input channels in the official order (FrameColor.py:64, REFERENCE.md §5).
INPUT_CHANNELS = (
    "frame L (centred)", "warped a", "warped b", "similarity",
    "previous L (centred)", "previous a", "previous b",
)
OUTPUT_LEAKY_SLOPE = 0.2  # LeakyReLU(0.2), only after conv10_2
AB_OUTPUT_SCALE = 128.0  # tanh(x) * 128: ab in raw Lab units (ColorVidNet.py:144)


class ConvStage(nn.Module):
    """``n`` 3x3 convs (zero padding, optional dilation), each followed by ReLU."""

    def __init__(self, in_channels: int, out_channels: int, num_convs: int, dilation: int = 1,
                 first_out_channels: int | None = None):
        super().__init__()
        widths = [first_out_channels or out_channels] + [out_channels] * (num_convs - 1)
        previous = in_channels
        for i, width in enumerate(widths, start=1):
            self.add_module(f"conv{i}", nn.Conv2d(previous, width, 3, padding=dilation, dilation=dilation))
            previous = width
        self.num_convs = num_convs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(1, self.num_convs + 1):
            x = conv_relu(getattr(self, f"conv{i}"), x)
        return x


class DepthwiseSubsample(nn.Module):
    """The official 1x1 depthwise stride-2 conv without bias: a per-channel scale of every other pixel."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Same products as the strided conv, without visiting the pixels it skips.
        return x[:, :, ::2, ::2] * self.weight.view(1, -1, 1, 1)


def phase_kernels(weight: torch.Tensor) -> torch.Tensor:
    """3x3 kernel of a conv applied after nearest x2 -> the four 2x2 kernels, (4, O, I, 2, 2).

    Output row 2i + a sees upsampled rows 2i + a - 1 .. 2i + a + 1, i.e. low-resolution rows
    (i - 1, i, i) for a = 0 and (i, i, i + 1) for a = 1; kernel rows landing on the same
    low-resolution row add up. Columns likewise. Phase order: (a, b) = 00, 01, 10, 11.
    """
    even = torch.stack((weight[..., 0, :], weight[..., 1, :] + weight[..., 2, :]), dim=-2)
    odd = torch.stack((weight[..., 0, :] + weight[..., 1, :], weight[..., 2, :]), dim=-2)
    kernels = []
    for rows in (even, odd):
        left = torch.stack((rows[..., 0], rows[..., 1] + rows[..., 2]), dim=-1)
        right = torch.stack((rows[..., 0] + rows[..., 1], rows[..., 2]), dim=-1)
        kernels += [left, right]
    return torch.stack(kernels)


class UpsampleConv(nn.Conv2d):
    """Nearest x2 upsampling followed by a 3x3 conv with zero padding 1, computed by phases."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, 3, padding=1)
        self._phase_cache: tuple[tuple, torch.Tensor] | None = None

    def _phase_kernels(self) -> torch.Tensor:
        """The four 2x2 kernels, recomputed only when the weight changes (frozen at inference).

        While training (grad enabled on a trainable weight) they are rebuilt every call, inside
        the graph, so the gradient reaches the 3x3 weight.
        """
        weight = self.weight
        if torch.is_grad_enabled() and weight.requires_grad:
            return phase_kernels(weight)
        version = 0 if weight.is_inference() else weight._version  # inference tensors are immutable
        key = (weight.data_ptr(), version, weight.dtype, weight.device)
        if self._phase_cache is None or self._phase_cache[0] != key:
            with torch.no_grad():
                self._phase_cache = (key, phase_kernels(weight))
        return self._phase_cache[1]

    def forward(self, x: torch.Tensor, memory_format: torch.memory_format | None = None) -> torch.Tensor:
        """``memory_format``: layout of the (2h, 2w) output; by default the input's."""
        kernels = self._phase_kernels()
        padded = F.pad(x, (1, 1, 1, 1))
        height, width = x.shape[-2:]
        phases = [F.conv2d(padded[:, :, a : a + height + 1, b : b + width + 1], kernels[index], self.bias)
                  for index, (a, b) in enumerate(PHASES)]
        return interleave_phases(phases, memory_format)

    def forward_reference(self, x: torch.Tensor) -> torch.Tensor:
        """The official formulation (upsample, then conv); for tests and the naive bench."""
        return super().forward(F.interpolate(x, scale_factor=2, mode="nearest"))


class DecoderStage(nn.Module):
    """Upsample-conv of the deeper map plus a 3x3 conv of the encoder skip, ReLU, then more convs."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, num_convs: int):
        super().__init__()
        self.up_conv = UpsampleConv(in_channels, out_channels)
        self.skip = nn.Conv2d(skip_channels, out_channels, 3, padding=1)
        for i in range(2, num_convs + 1):
            self.add_module(f"conv{i}", nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.num_convs = num_convs
        # Run this stage in channels_last: on CPU, oneDNN then skips the reorders of its large
        # outputs (worth ~0.2 s per frame at 432x768 for the full-resolution stage). Set by the
        # engine; results are the same.
        self.channels_last = False

    def forward(self, x: torch.Tensor, skip: torch.Tensor, last_negative_slope: float = 0.0) -> torch.Tensor:
        if self.channels_last:
            skip = skip.contiguous(memory_format=torch.channels_last)
            x = conv_add_relu(self.skip, skip, self.up_conv(x, torch.channels_last))
        else:
            x = conv_add_relu(self.skip, skip, self.up_conv(x))
        for i in range(2, self.num_convs + 1):
            slope = last_negative_slope if i == self.num_convs else 0.0
            x = conv_relu(getattr(self, f"conv{i}"), x, slope)
        return x


class ColorVidNet(nn.Module):
    """The colorization U-Net; ``forward`` takes the 7-channel input and returns ab (B, 2, H, W)."""

    def __init__(self, encoder_widths: Sequence[int], encoder_depths: Sequence[int], bottleneck_depth: int,
                 bottleneck_dilation: int, decoder_depths: Sequence[int], first_conv_width: int,
                 in_channels: int = len(INPUT_CHANNELS), out_channels: int = 2):
        super().__init__()
        w1, w2, w3, w4 = encoder_widths
        d1, d2, d3, d4 = encoder_depths
        self.enc1 = ConvStage(in_channels, w1, d1, first_out_channels=first_conv_width)
        self.down1 = DepthwiseSubsample(w1)
        self.enc2 = ConvStage(w1, w2, d2)
        self.down2 = DepthwiseSubsample(w2)
        self.enc3 = ConvStage(w2, w3, d3)
        self.down3 = DepthwiseSubsample(w3)
        self.enc4 = ConvStage(w3, w4, d4)
        self.dilated5 = ConvStage(w4, w4, bottleneck_depth, dilation=bottleneck_dilation)
        self.dilated6 = ConvStage(w4, w4, bottleneck_depth, dilation=bottleneck_dilation)
        self.middle7 = ConvStage(w4, w4, bottleneck_depth)
        d8, d9, d10 = decoder_depths
        self.dec8 = DecoderStage(w4, w3, w3, d8)
        self.dec9 = DecoderStage(w3, w2, w2, d9)
        self.dec10 = DecoderStage(w2, w1, w2, d10)  # conv10 stays 128 wide (conv1_2_short: 64 -> 128)
        self.head = nn.Conv2d(w2, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != len(INPUT_CHANNELS):
            raise ValueError(f"ColorVidNet: expected (B, 7, H, W) input, got {tuple(x.shape)}")
        if x.shape[-2] % 8 or x.shape[-1] % 8:
            raise ValueError(f"ColorVidNet: height and width must be multiples of 8, got {tuple(x.shape[-2:])}")
        skip1 = instance_norm(self.enc1(x))  # conv1_2norm
        skip2 = instance_norm(self.enc2(self.down1(skip1)))  # conv2_2norm
        skip3 = instance_norm(self.enc3(self.down2(skip2)))  # conv3_3norm
        x = instance_norm(self.enc4(self.down3(skip3)))
        x = instance_norm(self.dilated5(x))
        x = instance_norm(self.dilated6(x))
        x = instance_norm(self.middle7(x))
        x = instance_norm(self.dec8(x, skip3))
        x = instance_norm(self.dec9(x, skip2))
        x = self.dec10(x, skip1, last_negative_slope=OUTPUT_LEAKY_SLOPE)
        # The head may be kept in float32 when the rest runs in bfloat16 (the ab it returns
        # would otherwise carry bf16's 1/256 relative rounding into the recurrence).
        return (torch.tanh(self.head(x.to(self.head.weight.dtype))) * AB_OUTPUT_SCALE).contiguous()
