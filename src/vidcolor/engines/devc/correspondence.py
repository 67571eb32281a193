"""Correspondence subnet (the official ``WarpNet``, REFERENCE.md §4; paper Eq. 3-5).

Four branches bring the L2-normalised VGG maps relu2_2..relu5_2 to one quarter of the network
size, three residual blocks fuse them, and 1x1 projections (theta for the frame, phi for the
reference) embed every position. The correlation is the cosine of spatially centred,
L2-normalised embeddings; the warp mixes the reference's 4x4-pooled Lab by a softmax of it at
temperature T, and the confidence is its raw maximum.

Split in two for speed, with identical outputs: the reference side depends only on the
reference, so it is computed once (:class:`ReferenceEmbedding`); the frame side runs batched.
The warp never builds the N x N matrix: it works on chunks of frame positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vidcolor.color.official import FEATURE_NORM_EPSILON
from vidcolor.engines.devc.layers import instance_norm

POOLED_COLOR_STRIDE = 4  # reference Lab is avg-pooled 4x4 to the feature grid
UPSAMPLE_TO_NETWORK = 4  # warp and similarity: nearest x4 from the feature grid
INFERENCE_TEMPERATURE = 1e-10  # test.py:94: the softmax is numerically an argmax
TRAINING_TEMPERATURE = 0.01  # FrameColor.py:52, exercised by the golden data
# Below this temperature the warp takes the hard path (max/argmax + exact near-ties); above
# it, a chunked softmax (weights are genuinely soft there). Both equal the dense formulation.
HARD_WARP_MAX_TEMPERATURE = 1e-6
# Frame positions per chunk are chosen so one chunk of the correlation holds about this many
# entries (4 Mi entries = 16 MiB in float32), whatever the reference size.
CHUNK_ENTRIES = 1 << 22


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
    """(B, C, h, w) -> (B, C, N): centre each channel over positions, L2-normalise positions.

    Half-precision inputs (autocast) are promoted: the argmax must not see bf16 rounding.
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    flat = x.flatten(2)
    flat = flat - flat.mean(dim=2, keepdim=True)
    return flat / (torch.linalg.vector_norm(flat, dim=1, keepdim=True) + FEATURE_NORM_EPSILON)


def _chunk_rows(num_reference: int) -> int:
    return max(1, CHUNK_ENTRIES // max(1, num_reference))


def _softmax_cutoff(temperature: float, dtype: torch.dtype) -> float:
    """Cosine gap beyond which a softmax weight at ``temperature`` is exactly 0 in ``dtype``.

    exp(-g / T) underflows to 0 below the smallest subnormal, ``tiny * eps``; 1% margin.
    """
    info = torch.finfo(dtype)
    return 1.01 * temperature * -(math.log(info.tiny) + math.log(info.eps))


def row_max_argmax(corr: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``corr.max(dim=1)`` for (Q, M = h * w) rows, first index on ties, in two cheap passes.

    torch's max-with-indices kernel is ~10x slower on CPU than a plain max reduction, so the
    maximum of each reference row (``amax``) is found first, then the first reference row
    holding the overall maximum, then the argmax inside that row only.
    """
    rows_of_reference = corr.view(corr.shape[0], *grid)  # (Q, h, w)
    row_max = rows_of_reference.amax(dim=2)  # (Q, h)
    best, best_row = row_max.max(dim=1)  # small: Q x h
    within = rows_of_reference[torch.arange(corr.shape[0], device=corr.device), best_row]  # (Q, w)
    return best, best_row * grid[1] + within.argmax(dim=1)


def hard_warp(frames: torch.Tensor, reference: ReferenceEmbedding, temperature: float = INFERENCE_TEMPERATURE,
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact warp at a near-zero temperature without the N x N matrix.

    frames: (B, C, N) embeddings. Returns warped Lab (B, 3, N) and similarity (B, N).
    For each chunk of frame positions: the max and argmax over reference positions; a
    position whose softmax is one-hot in this dtype copies the pooled color of its argmax,
    which is exactly what ``softmax(f / T) @ colors`` gives (weights are exactly 1 and 0).
    Positions with a competitor within the underflow gap (exact ties, which the official
    softmax splits evenly, or gaps below ~1e-8) get the dense softmax for their row only.
    """
    batch, _, num_frame = frames.shape
    colors = reference.colors.to(frames.dtype)  # (3, M)
    phi = reference.features.to(frames.dtype)  # (C, M)
    warped = frames.new_empty(batch, colors.shape[0], num_frame)
    similarity = frames.new_empty(batch, num_frame)
    cutoff = _softmax_cutoff(temperature, frames.dtype)
    rows = _chunk_rows(phi.shape[1])
    for b in range(batch):
        for start in range(0, num_frame, rows):
            stop = min(start + rows, num_frame)
            corr = frames[b, :, start:stop].transpose(0, 1) @ phi  # (Q, M) cosines
            best, best_index = row_max_argmax(corr, reference.grid)
            similarity[b, start:stop] = best
            warped[b, :, start:stop] = colors[:, best_index]
            # Runner-up per row, in place (no second Q x M buffer): knock the winner out.
            winner = corr.gather(1, best_index.unsqueeze(1))
            corr.scatter_(1, best_index.unsqueeze(1), float("-inf"))
            runner_up = corr.amax(dim=1)
            tied = torch.nonzero(runner_up >= best - cutoff).flatten()
            if tied.numel():
                corr.scatter_(1, best_index.unsqueeze(1), winner)  # restore before the dense rows
                weights = torch.softmax(corr[tied] / temperature, dim=1)
                warped[b, :, start + tied] = (weights @ colors.transpose(0, 1)).transpose(0, 1)
            del corr  # free this chunk before the next one is allocated
    return warped, similarity


def soft_warp(frames: torch.Tensor, reference: ReferenceEmbedding, temperature: float,
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp at a finite temperature, chunk by chunk: each row is the dense softmax's row.

    Not ``F.scaled_dot_product_attention``: with value width 3 against key width 256 it has no
    fused CPU kernel and falls back to materialising N x N (measured: 243 MiB at 432x768, and
    slower than this). The chunks also give the similarity (row max) for free.
    """
    colors = reference.colors.to(frames.dtype).transpose(0, 1)  # (M, 3)
    phi = reference.features.to(frames.dtype)
    batch, _, num_frame = frames.shape
    warped = frames.new_empty(batch, colors.shape[1], num_frame)
    similarity = frames.new_empty(batch, num_frame)
    rows = _chunk_rows(phi.shape[1])
    for b in range(batch):
        for start in range(0, num_frame, rows):
            stop = min(start + rows, num_frame)
            corr = frames[b, :, start:stop].transpose(0, 1) @ phi
            similarity[b, start:stop] = corr.amax(dim=1)
            weights = torch.softmax(corr.div_(temperature), dim=1)
            warped[b, :, start:stop] = (weights @ colors).transpose(0, 1)
            del corr, weights
    return warped, similarity


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
    if temperature <= HARD_WARP_MAX_TEMPERATURE:
        warped, similarity = hard_warp(frames, reference, temperature)
    else:
        warped, similarity = soft_warp(frames, reference, temperature)
    return _grid_to_network(warped, reference.grid), _grid_to_network(similarity, reference.grid)


def _grid_to_network(x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, [C,] N) on the feature grid -> (B, C, H, W) at network size, nearest x4."""
    return F.interpolate(x.reshape(x.shape[0], -1, *grid), scale_factor=UPSAMPLE_TO_NETWORK, mode="nearest")


def dense_warp(frames: torch.Tensor, reference: ReferenceEmbedding, temperature: float,
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """The official formulation (full N x N correlation and softmax); for tests and benches."""
    corr = frames.transpose(1, 2) @ reference.features.to(frames.dtype)  # (B, N, M)
    similarity = corr.max(dim=-1).values
    weights = torch.softmax(corr / temperature, dim=-1)
    warped = (weights @ reference.colors.to(frames.dtype).transpose(0, 1)).transpose(1, 2)
    return warped, similarity
