"""The paper's correlation, warp and confidence (Eq. 3-5), in chunks of bounded memory.

Official behaviour reproduced (REFERENCE.md §4): each feature channel is centred over the
positions of its own image, each position is L2-normalised over channels (+2.22e-16), the
correlation is the cosine matrix f = θᵀφ, the confidence is the max over reference positions
of the raw cosine, and the warp is softmax(f / T) times the reference colours, which at the
official T = 1e-10 is a plain argmax copy. The N x M matrix is never stored whole: rows are
processed ``chunk`` frame positions at a time.

Beyond the paper: ``refine_matches`` sharpens an argmax field found on a coarse grid by local
search on a finer one (coarse to fine, with PatchMatch-style propagation), which costs far
less than the all-pairs correlation at the fine resolution.
"""

from __future__ import annotations

import torch

# feature_normalize's epsilon in the official code (utils/util.py:155-158, REFERENCE.md §4).
from vidcolor.color.official import FEATURE_NORM_EPSILON as NORMALIZE_EPSILON
# Bytes of similarity matrix held at once (one chunk of rows).
CHUNK_BYTES = 64 * 2**20


def centre_and_normalize(features: torch.Tensor, axes: torch.Tensor | None = None
                         ) -> torch.Tensor:
    """(B, C, N): subtract each channel's mean over N, then L2-normalise each position.

    With ``axes`` (C, k), the centred features are first projected onto them (k < C
    principal axes: the cosine keeps most of its information at a fraction of the cost).
    """
    if features.ndim != 3:
        raise ValueError(f"centre_and_normalize: expected (B, C, N), got {tuple(features.shape)}")
    centred = features - features.mean(dim=2, keepdim=True)
    if axes is not None:
        centred = torch.einsum("ck,bcn->bkn", axes, centred)
    return centred / (centred.norm(dim=1, keepdim=True) + NORMALIZE_EPSILON)


def principal_axes(features: torch.Tensor, dims: int) -> torch.Tensor:
    """The ``dims`` leading principal axes (C, dims) of (C, N) features (centred here)."""
    centred = features - features.mean(dim=1, keepdim=True)
    covariance = centred @ centred.t() / max(1, features.shape[1] - 1)
    _, vectors = torch.linalg.eigh(covariance.double())  # ascending eigenvalues
    return vectors[:, -dims:].flip(1).to(features.dtype)


def match(frame_features: torch.Tensor, ref_features: torch.Tensor, ref_colors: torch.Tensor,
          temperature: float | None = None, chunk: int | None = None
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp reference colours onto frame positions by feature similarity.

    ``frame_features`` (B, C, N) and ``ref_features`` (C, M), both already passed through
    :func:`centre_and_normalize`; ``ref_colors`` (K, M). Returns ``warped`` (B, K, N) and
    ``confidence`` (B, N), the max cosine (paper Eq. 5). ``temperature`` None or 0 gives the
    argmax warp (the official inference limit, T = 1e-10); a positive value the softmax warp.
    """
    if frame_features.ndim != 3 or ref_features.ndim != 2 or ref_colors.ndim != 2:
        raise ValueError(
            f"match: expected frame (B, C, N), reference (C, M), colours (K, M); got "
            f"{tuple(frame_features.shape)}, {tuple(ref_features.shape)}, {tuple(ref_colors.shape)}"
        )
    batch, channels, positions = frame_features.shape
    if ref_features.shape[0] != channels or ref_colors.shape[1] != ref_features.shape[1]:
        raise ValueError(
            f"match: channel or position counts disagree: frame {tuple(frame_features.shape)}, "
            f"reference {tuple(ref_features.shape)}, colours {tuple(ref_colors.shape)}"
        )
    ref_positions = ref_features.shape[1]
    if chunk is None:
        bytes_per_row = batch * ref_positions * frame_features.element_size()
        chunk = max(1, CHUNK_BYTES // max(1, bytes_per_row))
    colors_t = ref_colors.t().to(frame_features.dtype)  # (M, K)
    warped = frame_features.new_empty(batch, ref_colors.shape[0], positions)
    confidence = frame_features.new_empty(batch, positions)
    for start in range(0, positions, chunk):
        stop = min(positions, start + chunk)
        similarity = torch.einsum("bcn,cm->bnm", frame_features[:, :, start:stop], ref_features)
        best, index = similarity.max(dim=2)
        confidence[:, start:stop] = best
        if not temperature:
            warped[:, :, start:stop] = colors_t[index].permute(0, 2, 1)
        else:
            weights = torch.softmax(similarity / temperature, dim=2)
            warped[:, :, start:stop] = (weights @ colors_t).permute(0, 2, 1)
    return warped, confidence


def _shift_field(field: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """out[..., y, x] = field[..., y + rows, x + cols], borders replicated."""
    height, width = field.shape[-2:]
    row_index = (torch.arange(height, device=field.device) + rows).clamp(0, height - 1)
    col_index = (torch.arange(width, device=field.device) + cols).clamp(0, width - 1)
    return field[..., row_index, :][..., col_index]


def refine_matches(frame_features: torch.Tensor, ref_features: torch.Tensor,
                   offsets: torch.Tensor, radius: int = 2, propagation_rounds: int = 1
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Improve a nearest-neighbour field on a finer grid by local search (coarse to fine).

    ``frame_features`` (B, C, h, w) and ``ref_features`` (C, H, W), each position already
    centred and normalised, so a dot product is the paper's cosine. ``offsets`` (B, 2, h, w)
    integer (row, col): frame position p currently matches reference position p + offset.
    Each position tries every offset within ``radius`` of its own, then (PatchMatch-style
    propagation, Barnes et al. 2009) its four neighbours' offsets, ``propagation_rounds``
    times; candidates that leave the reference are skipped. Returns the best offsets and their
    cosine (B, h, w), -inf where every candidate left the reference. Memory: the gathered
    candidates of one round, (2 radius + 1)^2 x h x w x C values.
    """
    if frame_features.shape[0] > 1:  # one frame at a time bounds the candidates' memory
        results = [refine_matches(frame_features[b:b + 1], ref_features, offsets[b:b + 1],
                                  radius, propagation_rounds)
                   for b in range(frame_features.shape[0])]
        return torch.cat([r[0] for r in results]), torch.cat([r[1] for r in results])
    batch, channels, height, width = frame_features.shape
    ref_h, ref_w = ref_features.shape[-2:]
    # Row-major layouts: all candidates of a round are one row gather and one row-wise dot.
    ref_rows = ref_features.reshape(channels, ref_h * ref_w).t().contiguous()  # (M, C)
    frame_rows = frame_features.permute(0, 2, 3, 1).reshape(1, -1, channels)  # (1, B*h*w, C)
    rows = torch.arange(height, device=offsets.device).view(height, 1)
    cols = torch.arange(width, device=offsets.device).view(1, width)

    def best_of(candidates: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """candidates (K, B, 2, h, w) -> the best one per position and its similarity."""
        count = candidates.shape[0]
        target_row = rows + candidates[:, :, 0]
        target_col = cols + candidates[:, :, 1]
        inside = (target_row >= 0) & (target_row < ref_h) & (target_col >= 0) & (target_col < ref_w)
        index = target_row.clamp(0, ref_h - 1) * ref_w + target_col.clamp(0, ref_w - 1)
        gathered = ref_rows.index_select(0, index.flatten()).view(count, -1, channels)
        similarity = (gathered * frame_rows).sum(dim=2).view(count, batch, height, width)
        similarity = similarity.masked_fill(~inside, -float("inf"))
        best_similarity, choice = similarity.max(dim=0)
        choice = choice[None, :, None].expand(1, batch, 2, height, width)
        return candidates.gather(0, choice)[0], best_similarity

    steps = torch.arange(-radius, radius + 1, device=offsets.device)
    window = torch.stack(torch.meshgrid(steps, steps, indexing="ij"), dim=-1).reshape(-1, 2)
    best, best_similarity = best_of(offsets[None] + window.view(-1, 1, 2, 1, 1))
    for _ in range(propagation_rounds):
        neighbours = [_shift_field(best, dy, dx) for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0))]
        candidates, similarity = best_of(torch.stack(neighbours))
        better = similarity > best_similarity
        best = torch.where(better[:, None], candidates, best)
        best_similarity = torch.where(better, similarity, best_similarity)
    return best, best_similarity
