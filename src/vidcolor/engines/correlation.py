"""The paper's correlation and warp (Eq. 3-5), shared by the devc and classic engines.

Both engines compare a frame with the reference by the cosine of spatially centred,
L2-normalised feature vectors (:func:`centred_cosine`), take the maximum cosine over reference
positions as the confidence, and warp the reference's colours by a softmax of the cosines at
temperature T (:func:`correlate_and_warp`). The official inference temperature, 1e-10, makes
the softmax an argmax in every float format, so below :data:`HARD_WARP_MAX_TEMPERATURE` the
warp copies the argmax's colour and only rows with a competitor inside the underflow gap get
their softmax (exactly the dense result, REFERENCE.md §4).

The frame-by-reference matrix is never stored whole: chunks of frame positions, batched over
frames with one ``bmm``. On CPU a chunk holds :data:`CPU_CHUNK_ENTRIES` (cache sized); on a GPU
it is sized from the free memory once per call, and nothing in the chunk loop reads a value
back to the host (near-ties are resolved with masked ops, not ``nonzero``), so a batch of frames
is queued without waiting.
"""

from __future__ import annotations

import math

import torch

# feature_normalize's epsilon in the official code (utils/util.py:155-158, REFERENCE.md §4).
from vidcolor.color.official import FEATURE_NORM_EPSILON as NORMALIZE_EPSILON
# Below this temperature the warp takes the hard path (max/argmax + exact near-ties); above
# it, a chunked softmax (weights are genuinely soft there). Both equal the dense formulation.
HARD_WARP_MAX_TEMPERATURE = 1e-6
# CPU: correlation entries per chunk (4 Mi = 16 MiB in float32): measured fastest, whatever the
# reference size (bench/correspondence.py).
CPU_CHUNK_ENTRIES = 1 << 22
# GPU: a chunk may take this fraction of the free memory (the correlation plus its softmax
# copy), up to GPU_MAX_CHUNK_ENTRIES (1 GiB of float32; larger chunks gain nothing).
GPU_FREE_MEMORY_FRACTION = 0.25
GPU_MAX_CHUNK_ENTRIES = 1 << 28
BUFFERS_PER_ENTRY = 2  # the cosines and one softmax-sized temporary


def centred_cosine(features: torch.Tensor, axes: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, N) -> correlation-ready embeddings: each channel centred over the N positions of
    its own image, then each position L2-normalised (+ the official epsilon).

    ``axes`` (C, k): project the centred features on these axes before normalising (the
    classic engine's principal axes). Half-precision inputs are promoted to float32: the
    argmax must not see bf16/fp16 rounding.
    """
    if features.ndim != 3:
        raise ValueError(f"centred_cosine: expected (B, C, N), got {tuple(features.shape)}")
    if features.dtype in (torch.float16, torch.bfloat16):
        features = features.float()
    centred = features - features.mean(dim=2, keepdim=True)
    if axes is not None:
        centred = torch.einsum("ck,bcn->bkn", axes.to(centred.dtype), centred)
    return centred / (torch.linalg.vector_norm(centred, dim=1, keepdim=True) + NORMALIZE_EPSILON)


def chunk_rows(batch: int, num_reference: int, like: torch.Tensor) -> int:
    """Frame positions per chunk so that one chunk of ``batch`` frames fits its budget."""
    per_row = max(1, batch * num_reference)
    if like.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(like.device)
        entries = int(free * GPU_FREE_MEMORY_FRACTION) // (like.element_size() * BUFFERS_PER_ENTRY)
        entries = min(entries, GPU_MAX_CHUNK_ENTRIES)
    else:
        entries = CPU_CHUNK_ENTRIES
    return max(1, entries // per_row)


def softmax_cutoff(temperature: float, dtype: torch.dtype) -> float:
    """Cosine gap beyond which a softmax weight at ``temperature`` is exactly 0 in ``dtype``.

    exp(-g / T) underflows to 0 below the smallest subnormal, ``tiny * eps``; 1% margin.
    """
    info = torch.finfo(dtype)
    return 1.01 * temperature * -(math.log(info.tiny) + math.log(info.eps))


def row_max_argmax(corr: torch.Tensor, grid: tuple[int, int] | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``corr.max(dim=-1)`` for (..., M) rows, first index on ties.

    On CPU with ``grid`` (h, w), M = h * w, in two cheap passes: torch's max-with-indices
    kernel is ~10x slower there than a plain max reduction, so the maximum of each reference
    row (``amax``) comes first, then the first reference row holding the overall maximum,
    then the argmax inside that row only. Elsewhere the plain kernel.
    """
    best, index, _ = _row_top(corr, grid, runner_up=False)
    return best, index


def row_top_two(corr: torch.Tensor, grid: tuple[int, int] | None = None,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`row_max_argmax` and the runner-up: the largest value of the row once the winning
    entry is left out (-inf for a one-entry row). On CPU with ``grid`` it comes from the small
    per-reference-row maxima and the winning reference row alone, exactly, with no second pass
    over ``corr``; elsewhere the winner is knocked out in place for one ``amax`` and restored.
    """
    return _row_top(corr, grid, runner_up=True)


def _row_top(corr: torch.Tensor, grid: tuple[int, int] | None, runner_up: bool):
    if grid is None or corr.device.type != "cpu":
        best, index = corr.max(dim=-1)
        if not runner_up:
            return best, index, None
        winner = index.unsqueeze(-1)
        corr.scatter_(-1, winner, float("-inf"))
        second = corr.amax(dim=-1)
        corr.scatter_(-1, winner, best.unsqueeze(-1))
        return best, index, second
    lead = corr.shape[:-1]
    rows = corr.reshape(-1, *grid)  # (R, h, w)
    row_best = rows.amax(dim=2)  # small: R x h
    best, best_row = row_best.max(dim=1)
    within = rows[torch.arange(rows.shape[0], device=corr.device), best_row]  # (R, w)
    column = within.argmax(dim=1)
    index = best_row * grid[1] + column
    if not runner_up:
        return best.view(lead), index.view(lead), None
    other_rows = row_best.scatter(1, best_row.unsqueeze(1), float("-inf")).amax(dim=1)
    rest_of_row = within.scatter(1, column.unsqueeze(1), float("-inf")).amax(dim=1)
    second = torch.maximum(other_rows, rest_of_row)
    return best.view(lead), index.view(lead), second.view(lead)


def _check(frames: torch.Tensor, features: torch.Tensor, colors: torch.Tensor) -> None:
    if frames.ndim != 3 or features.ndim != 2 or colors.ndim != 2:
        raise ValueError(
            f"correlate_and_warp: expected frames (B, C, N), reference (C, M), colours (K, M); got "
            f"{tuple(frames.shape)}, {tuple(features.shape)}, {tuple(colors.shape)}"
        )
    if features.shape[0] != frames.shape[1] or colors.shape[1] != features.shape[1]:
        raise ValueError(
            f"correlate_and_warp: channel or position counts disagree: frames {tuple(frames.shape)}, "
            f"reference {tuple(features.shape)}, colours {tuple(colors.shape)}"
        )


def correlate_and_warp(frames: torch.Tensor, features: torch.Tensor, colors: torch.Tensor,
                       temperature: float | None, *, grid: tuple[int, int] | None = None,
                       rows: int | None = None, masked: bool | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp ``colors`` (K, M) onto every frame position by the cosine with ``features`` (C, M).

    ``frames`` (B, C, N) and ``features`` are :func:`centred_cosine` embeddings (features of
    one reference image). Returns warped colours (B, K, N) and the confidence (B, N), the max
    cosine. ``temperature``:

    * None or 0: the plain argmax copy (the T -> 0 limit);
    * up to :data:`HARD_WARP_MAX_TEMPERATURE`: what ``softmax(f / T) @ colors`` gives exactly
      (argmax copy; rows with a competitor within the underflow gap, e.g. exact ties, which
      the softmax splits, get their dense softmax row);
    * above: the chunked softmax.

    ``grid``: the reference's (h, w) when M = h * w (a faster CPU argmax); ``rows``: frame
    positions per chunk (default: :func:`chunk_rows`); ``masked``: resolve near-ties by masked
    ops that never read back to the host (default: on every device but the CPU).
    """
    _check(frames, features, colors)
    if temperature is not None and temperature < 0:
        raise ValueError(f"correlate_and_warp: temperature must be >= 0, got {temperature}")
    batch, channels, num_frame = frames.shape
    num_reference = features.shape[1]
    features = features.to(frames.dtype)
    colors_t = colors.to(frames.dtype).transpose(0, 1)  # (M, K)
    rows = rows or chunk_rows(batch, num_reference, frames)
    # One batched matrix product per chunk: (B, Q, C) @ (B, C, M), the reference broadcast.
    reference = features.expand(batch, channels, num_reference)
    warped = frames.new_empty(batch, num_frame, colors_t.shape[1])
    confidence = frames.new_empty(batch, num_frame)
    hard = not temperature or temperature <= HARD_WARP_MAX_TEMPERATURE
    cutoff = softmax_cutoff(temperature, frames.dtype) if temperature and hard else None
    masked = frames.device.type != "cpu" if masked is None else masked
    # One buffer for every chunk: a fresh allocation per chunk fragments the heap (RSS grows by
    # several chunks under glibc's malloc) and churns a GPU's allocator.
    buffer = frames.new_empty(batch * min(rows, num_frame) * num_reference)
    for start in range(0, num_frame, rows):
        stop = min(start + rows, num_frame)
        corr = buffer[: batch * (stop - start) * num_reference].view(batch, stop - start, num_reference)
        torch.bmm(frames[:, :, start:stop].transpose(1, 2), reference, out=corr)  # (B, Q, M)
        if not hard:
            confidence[:, start:stop] = corr.amax(dim=2)
            warped[:, start:stop] = torch.softmax(corr.div_(temperature), dim=2) @ colors_t
        else:
            if cutoff is None:
                best, index = row_max_argmax(corr, grid)
            else:
                best, index, second = row_top_two(corr, grid)
            confidence[:, start:stop] = best
            warped[:, start:stop] = colors_t[index]
            if cutoff is not None:
                _soften_near_ties(corr, second >= best - cutoff, temperature, colors_t,
                                  warped[:, start:stop], masked)
    return warped.transpose(1, 2).contiguous(), confidence


def _soften_near_ties(corr: torch.Tensor, tied: torch.Tensor, temperature: float,
                      colors_t: torch.Tensor, out: torch.Tensor, masked: bool) -> None:
    """Rows whose runner-up lies within the softmax cutoff of the max (``tied``, (B, Q)) get
    their dense softmax row.

    Unmasked (CPU): the few such rows are picked out (a host read is free there). Masked
    (GPU): every row's softmax is computed and selected by mask, so nothing waits.
    """
    if not masked:
        where = torch.nonzero(tied)
        if where.numel():
            picked = corr[where[:, 0], where[:, 1]]
            out[where[:, 0], where[:, 1]] = torch.softmax(picked / temperature, dim=-1) @ colors_t
        return
    soft = torch.softmax(corr.div_(temperature), dim=-1) @ colors_t
    out.copy_(torch.where(tied.unsqueeze(-1), soft, out))


def dense_correlate_and_warp(frames: torch.Tensor, features: torch.Tensor, colors: torch.Tensor,
                             temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The official formulation (full N x M matrix and softmax); for tests and benches."""
    corr = frames.transpose(1, 2) @ features.to(frames.dtype)  # (B, N, M)
    confidence = corr.max(dim=-1).values
    weights = torch.softmax(corr / temperature, dim=-1)
    return (weights @ colors.to(frames.dtype).transpose(0, 1)).transpose(1, 2), confidence
