"""Correspondence subnet (the official ``WarpNet``, REFERENCE.md §4; paper Eq. 3-5).

Four branches bring the L2-normalised VGG maps relu2_2..relu5_2 to one quarter of the network
size, three residual blocks fuse them, and 1x1 projections (theta for the frame, phi for the
reference) embed every position. The correlation is the cosine of spatially centred,
L2-normalised embeddings; the warp mixes the reference's 4x4-pooled Lab by a softmax of it at
temperature T, and the confidence is its raw maximum.

Split in two for speed, with identical outputs: the reference side depends only on the
reference, so it is computed once (:class:`ReferenceEmbedding`); the frame side runs batched.
The correlation and the warp themselves are the shared ``engines/correlation.py`` (the classic
engine uses the same): they never build the N x N matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vidcolor.engines.correlation import centred_cosine, correlate_and_warp, dense_correlate_and_warp
from vidcolor.engines.devc.layers import instance_norm

POOLED_COLOR_STRIDE = 4  # reference Lab is avg-pooled 4x4 to the feature grid
UPSAMPLE_TO_NETWORK = 4  # warp and similarity: nearest x4 from the feature grid
INFERENCE_TEMPERATURE = 1e-10  # test.py:94: the softmax is numerically an argmax
TRAINING_TEMPERATURE = 0.01  # FrameColor.py:52, exercised by the golden data


def reflect_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """ReflectionPad2d(1) then a 3x3 conv without padding, as every WarpNet conv."""
    return conv(F.pad(x, (1, 1, 1, 1), mode="reflect"))


class FeatureBranch(nn.Module):
    """One VGG level -> 64 channels at the feature grid: (pad, conv, IN, PReLU) twice.

    ``stride`` applies to the second conv (relu2_2 halves there); ``upsample_between`` and
    ``upsample_after`` are the nearest x2 steps of the deeper levels.
    """

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, *, stride: int = 1,
                 upsample_between: bool = False, upsample_after: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 3)
        self.prelu1 = nn.PReLU()
        self.conv2 = nn.Conv2d(mid_channels, out_channels, 3, stride=stride)
        self.prelu2 = nn.PReLU()
        self.upsample_between = upsample_between
        self.upsample_after = upsample_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu1(instance_norm(reflect_conv(self.conv1, x)))
        if self.upsample_between:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.prelu2(instance_norm(reflect_conv(self.conv2, x)))
        if self.upsample_after:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        return x


class ResidualBlock(nn.Module):
    """pad-conv-IN-PReLU-pad-conv-IN, plus the input, then the SAME PReLU again (§4)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3)
        self.prelu = nn.PReLU()  # one slope, used twice: the official block has one parameter
        self.conv2 = nn.Conv2d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.prelu(instance_norm(reflect_conv(self.conv1, x)))
        y = instance_norm(reflect_conv(self.conv2, y))
        return self.prelu(y + x)


def match_height(deep: torch.Tensor, target_height: int) -> torch.Tensor:
    """The official fix-up: relu5_2's branch is 2 rows short at network heights 16k+8.

    It pads one replicated row at the top and one at the bottom (NonlocalNet.py:461-463);
    only that case exists for the sizes ``check_working_size`` accepts.
    """
    if deep.shape[-2] == target_height:
        return deep
    padded = F.pad(deep, (0, 0, 1, 1), mode="replicate")
    if padded.shape[-2] != target_height:
        raise ValueError(
            f"correspondence: relu5_2 branch height {deep.shape[-2]} cannot be fixed up to "
            f"{target_height}; the network height must be a multiple of 8"
        )
    return padded


@dataclass(frozen=True)
class ReferenceEmbedding:
    """Everything the frame side needs from the reference, computed once per reference.

    ``features``: phi embeddings, spatially centred and L2-normalised, (C, M).
    ``colors``: the reference's centred Lab avg-pooled 4x4 to the feature grid, (3, M).
    ``grid``: the feature grid (h, w), M = h * w.
    """

    features: torch.Tensor
    colors: torch.Tensor
    grid: tuple[int, int]


class CorrespondenceNet(nn.Module):
    """WarpNet's weights and its two embeddings (frame: theta, reference: phi)."""

    def __init__(self, branches: Sequence[FeatureBranch], fused_channels: int, num_residual_blocks: int,
                 embedding_channels: int):
        super().__init__()
        self.branch_relu2, self.branch_relu3, self.branch_relu4, self.branch_relu5 = branches
        self.fusion = nn.Sequential(*(ResidualBlock(fused_channels) for _ in range(num_residual_blocks)))
        self.frame_projection = nn.Conv2d(fused_channels, embedding_channels, 1)  # official theta
        self.reference_projection = nn.Conv2d(fused_channels, embedding_channels, 1)  # official phi

    def fuse(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Normalised (relu2_2, relu3_2, relu4_2, relu5_2) -> fused 256-channel map at the grid."""
        relu2, relu3, relu4, relu5 = features
        level2 = self.branch_relu2(relu2)
        level3 = self.branch_relu3(relu3)
        level4 = self.branch_relu4(relu4)
        level5 = match_height(self.branch_relu5(relu5), level2.shape[-2])
        return self.fusion(torch.cat((level2, level3, level4, level5), dim=1))

    def embed_frames(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Frame side: (B, C, N) correlation-ready theta embeddings."""
        return correlation_embedding(self.frame_projection(self.fuse(features)))

    def embed_reference(self, features: Sequence[torch.Tensor], lab_centred: torch.Tensor) -> ReferenceEmbedding:
        """Reference side, once: phi embedding plus the pooled colors the warp copies."""
        if lab_centred.shape[0] != 1:
            raise ValueError(f"embed_reference: one reference at a time, got batch {lab_centred.shape[0]}")
        phi = self.reference_projection(self.fuse(features))
        grid = (int(phi.shape[-2]), int(phi.shape[-1]))
        colors = F.avg_pool2d(lab_centred, POOLED_COLOR_STRIDE)
        if tuple(colors.shape[-2:]) != grid:
            raise ValueError(f"embed_reference: pooled Lab {tuple(colors.shape[-2:])} does not match grid {grid}")
        return ReferenceEmbedding(correlation_embedding(phi)[0], colors[0].flatten(1), grid)


def correlation_embedding(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, C, N): the shared centred cosine embedding (half precision promoted)."""
    return centred_cosine(x.flatten(2))


def chunked_warp(frames: torch.Tensor, reference: ReferenceEmbedding, temperature: float = INFERENCE_TEMPERATURE,
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Warped Lab (B, 3, N) and similarity (B, N) on the feature grid, frames (B, C, N).

    Exact (the dense softmax's rows) at any temperature, chunk by chunk. Not
    ``F.scaled_dot_product_attention``: with value width 3 against key width 256 it has no
    fused CPU kernel and falls back to materialising N x N (measured: 243 MiB at 432x768, and
    slower than this). The chunks also give the similarity (row max) for free.
    """
    return correlate_and_warp(frames, reference.features, reference.colors, temperature, grid=reference.grid)


def warp(frames: torch.Tensor, reference: ReferenceEmbedding, temperature: float = INFERENCE_TEMPERATURE,
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Warped Lab (B, 3, H, W) and similarity (B, 1, H, W) at network size (nearest x4)."""
    if temperature <= 0:
        raise ValueError(f"warp: temperature must be positive, got {temperature}")
    if frames.shape[-1] != reference.colors.shape[-1]:
        raise ValueError(
            f"warp: frames have {frames.shape[-1]} feature positions, the reference grid "
            f"{reference.grid} has {reference.colors.shape[-1]}: frames and reference must share a size"
        )
    warped, similarity = chunked_warp(frames, reference, temperature)
    return _grid_to_network(warped, reference.grid), _grid_to_network(similarity, reference.grid)


def _grid_to_network(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, [C,] N) on the feature grid -> (B, C, H, W) at network size, nearest x4."""
    return F.interpolate(x.reshape(x.shape[0], -1, *grid), scale_factor=UPSAMPLE_TO_NETWORK, mode="nearest")


def dense_warp(frames: torch.Tensor, reference: ReferenceEmbedding, temperature: float,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The official formulation (full N x N correlation and softmax); for tests and benches."""
    return dense_correlate_and_warp(frames, reference.features, reference.colors, temperature)
