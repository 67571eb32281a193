"""The video discriminator of the paper's Table 4 (official ``Discriminator_x64``).

Input: two consecutive Lab frames stacked, [L_t, ab_t, L_t-1, ab_t-1] (6 channels). Six 4x4
stride-2 convolutions halve the size six times (64, 64, 128, 256, 512, 1024 channels), a SAGAN
self-attention block follows the second, and a seventh conv maps to one channel, averaged over
the remaining positions: one score per sample. Spectral norm on every conv, instance norm after
all but the first and the last, LeakyReLU(0.2).

The official last conv is 3x6 without padding, which only fits the 216x384 crops (3x6 left
after six halvings); ours is 3x3 with padding 1 followed by the average, so any crop works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

INPUT_CHANNELS = 6  # [L_t, a_t, b_t, L_t-1, a_t-1, b_t-1]
WIDTHS = (64, 64, 128, 256, 512, 1024)  # Table 4, the six stride-2 convs
KERNEL, STRIDE, PADDING = 4, 2, 1  # each halves the size
LEAKY_SLOPE = 0.2
ATTENTION_AFTER = 2  # self-attention after the second conv
ATTENTION_REDUCTION = 8  # SAGAN: query and key at C/8 channels
# The networks see L in [0, 100] and ab in about [-128, 128]; the discriminator gets them at unit
# scale (ours: the official feeds un-centred Lab, see REFERENCE.md §11).
L_SCALE, AB_SCALE = 50.0, 128.0


def discriminator_input(l_current: torch.Tensor, ab_current: torch.Tensor, l_previous: torch.Tensor,
                        ab_previous: torch.Tensor) -> torch.Tensor:
    """Centred L (B, 1, H, W) and ab (B, 2, H, W) of frames t and t-1 -> the 6-channel input."""
    return torch.cat((l_current / L_SCALE, ab_current / AB_SCALE, l_previous / L_SCALE, ab_previous / AB_SCALE),
                     dim=1)


class SelfAttention(nn.Module):
    """SAGAN self-attention (Zhang et al. 2019): x + gamma * attention(x); gamma starts at 0."""

    def __init__(self, channels: int):
        super().__init__()
        inner = max(1, channels // ATTENTION_REDUCTION)
        self.query = spectral_norm(nn.Conv2d(channels, inner, 1))
        self.key = spectral_norm(nn.Conv2d(channels, inner, 1))
        self.value = spectral_norm(nn.Conv2d(channels, channels, 1))
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        query = self.query(x).flatten(2)  # (B, C', N)
        key = self.key(x).flatten(2)
        value = self.value(x).flatten(2)  # (B, C, N)
        attention = torch.softmax(query.transpose(1, 2) @ key, dim=2)  # (B, N, N): row i attends to j
        out = (value @ attention.transpose(1, 2)).view(batch, channels, height, width)
        return x + self.gamma * out


class VideoDiscriminator(nn.Module):
    """Table 4: ``forward`` takes (B, 6, H, W) and returns one score per sample, (B,)."""

    def __init__(self, in_channels: int = INPUT_CHANNELS, widths: tuple[int, ...] = WIDTHS):
        super().__init__()
        convs = []
        previous = in_channels
        for width in widths:
            convs.append(spectral_norm(nn.Conv2d(previous, width, KERNEL, STRIDE, PADDING)))
            previous = width
        self.convs = nn.ModuleList(convs)
        self.attention = SelfAttention(widths[ATTENTION_AFTER - 1])
        self.last = spectral_norm(nn.Conv2d(previous, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.convs[0].in_channels:
            raise ValueError(f"VideoDiscriminator: expected (B, {self.convs[0].in_channels}, H, W), "
                             f"got {tuple(x.shape)}")
        for index, conv in enumerate(self.convs, start=1):
            x = conv(x)
            if index > 1:
                x = F.instance_norm(x)
            x = F.leaky_relu(x, LEAKY_SLOPE)
            if index == ATTENTION_AFTER:
                x = self.attention(x)
        return self.last(x).mean(dim=(1, 2, 3))  # average pooling: one score per sample
