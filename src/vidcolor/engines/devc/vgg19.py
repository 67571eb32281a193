"""VGG19 feature extractor as the official DEVC uses it (REFERENCE.md §3).

Plain VGG19 convolutions with Caffe-style input, stopped at relu5_2: the official forward also
computes conv5_3, conv5_4 and pool5, which nothing reads. Returns relu2_2, relu3_2, relu4_2 and
relu5_2 (the layers the correspondence subnet consumes; relu1_2 is never used).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from vidcolor.color.lab import L_MEAN, L_RANGE
from vidcolor.color.official import FEATURE_NORM_EPSILON
from vidcolor.engines.devc.layers import conv_relu, max_pool_2x2

# Caffe VGG means (103.939, 116.779, 123.68) / 255 in BGR order, as the official
# vgg_preprocess writes them (utils/util.py:347-352). It builds them with torch.Tensor, i.e.
# float32, so even a float64 run subtracts the float32-rounded values (REFERENCE.md §3).
CAFFE_MEAN_BGR = (0.40760392, 0.45795686, 0.48501961)
CAFFE_INPUT_SCALE = 255.0  # Caffe VGG expects [0, 255] inputs; there is no std division


def caffe_preprocess(rgb: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1], (B, 3, H, W) -> Caffe VGG input: BGR, minus the means, x255."""
    if rgb.dim() != 4 or rgb.shape[1] != 3:
        raise ValueError(f"caffe_preprocess: expected (B, 3, H, W) RGB, got {tuple(rgb.shape)}")
    mean = torch.tensor(CAFFE_MEAN_BGR, dtype=torch.float32).to(device=rgb.device, dtype=rgb.dtype)
    return (rgb.flip(1) - mean.view(1, 3, 1, 1)) * CAFFE_INPUT_SCALE


def gray_to_rgb(l_centred: torch.Tensor) -> torch.Tensor:
    """Centred L (B, 1, H, W) -> gray RGB in [0, 1] replicated to 3 channels (util.py:97-101)."""
    if l_centred.dim() != 4 or l_centred.shape[1] != 1:
        raise ValueError(f"gray_to_rgb: expected centred L of shape (B, 1, H, W), got {tuple(l_centred.shape)}")
    return ((l_centred + L_MEAN) / L_RANGE).expand(-1, 3, -1, -1)  # gray RGB in [0, 1]


def normalize_features(x: torch.Tensor) -> torch.Tensor:
    """Per-position L2 normalisation over channels, ``x / (||x|| + 2.22e-16)`` (util.py:155-158)."""
    return x / (torch.linalg.vector_norm(x, dim=1, keepdim=True) + FEATURE_NORM_EPSILON)


class ConvBlock(nn.Module):
    """A VGG stage: ``n`` 3x3 convolutions with padding 1, each followed by ReLU."""

    def __init__(self, in_channels: int, out_channels: int, num_convs: int):
        super().__init__()
        for i in range(num_convs):
            conv = nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1)
            self.add_module(f"conv{i + 1}", conv)
        self.num_convs = num_convs

    def forward(self, x: torch.Tensor, tap: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Runs the stage; also returns the activation after conv ``tap`` (1-based)."""
        tapped = None
        for i in range(1, self.num_convs + 1):
            x = conv_relu(getattr(self, f"conv{i}"), x)
            if i == tap:
                tapped = x
        return x, tapped


class VGG19Features(nn.Module):
    """VGG19 to relu5_2; returns (relu2_2, relu3_2, relu4_2, relu5_2), raw (not normalised)."""

    def __init__(self, widths: Sequence[int], convs_per_block: Sequence[int]):
        super().__init__()
        in_channels = 3
        for index, (width, count) in enumerate(zip(widths, convs_per_block), start=1):
            self.add_module(f"block{index}", ConvBlock(in_channels, width, count))
            in_channels = width

    def forward(self, caffe_input: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, _ = self.block1(caffe_input)
        x, _ = self.block2(max_pool_2x2(x))
        relu2_2 = x
        x, relu3_2 = self.block3(max_pool_2x2(x), tap=2)
        x, relu4_2 = self.block4(max_pool_2x2(x), tap=2)
        relu5_2, _ = self.block5(max_pool_2x2(x))
        return relu2_2, relu3_2, relu4_2, relu5_2
