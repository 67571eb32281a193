"""The chunked warp against the dense N x N formulation of the official WarpNet."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import vidcolor.engines.correlation as correlation
import vidcolor.engines.devc.correspondence as correspondence
from tolerance import F32_EPS, F64_EPS, assert_close, top_two_gap
from vidcolor.engines.devc.correspondence import (
    ReferenceEmbedding,
    correlation_embedding,
    dense_warp,
    chunked_warp,
    warp,
)

GRID = (12, 16)  # 192 positions on each side
EPS = {torch.float64: F64_EPS, torch.float32: F32_EPS}


def cosine_tol(channels: int, dtype: torch.dtype) -> float:
    """A cosine of unit vectors summed over ``channels`` terms in another order (matrix products
    of other shapes): each partial sum rounds by at most one ulp of 1."""
    return channels * EPS[dtype]


def assert_same_warp(warped, expected, similarity, frames, reference, temperature, tol):
    """Hard-warp colours are copies, so equal, except where the best two cosines are close
    enough that rounding can reorder them or change their softmax split (a near-tie)."""
    scores = frames.transpose(1, 2) @ reference.features.to(frames.dtype)  # (B, N, M)
    gap = top_two_gap(scores.flatten(0, 1)).view(similarity.shape)
    # Beyond the underflow gap plus the cosines' rounding, the softmax is one-hot either way.
    decided = gap > correlation.softmax_cutoff(temperature, frames.dtype) + 2 * tol
    assert decided.float().mean() > 0.95, "too many near-ties for a meaningful comparison"
    mask = decided[:, None].expand_as(warped)
    assert torch.equal(warped[mask], expected[mask])


def _embeddings(batch: int, channels: int, grid=GRID, dtype=torch.float64, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    frames = correlation_embedding(torch.randn(batch, channels, *grid, generator=generator, dtype=dtype))
    phi = correlation_embedding(torch.randn(1, channels, *grid, generator=generator, dtype=dtype))[0]
    colors = torch.randn(3, grid[0] * grid[1], generator=generator, dtype=dtype) * 40
    return frames, ReferenceEmbedding(phi, colors, grid)


def test_correlation_embedding_is_centred_and_unit_norm():
    x = torch.randn(2, 8, 5, 7, dtype=torch.float64) + 3.0
    e = correlation_embedding(x)
    assert e.shape == (2, 8, 35)
    torch.testing.assert_close(e.sum(dim=1) * 0, torch.zeros(2, 35, dtype=torch.float64))
    torch.testing.assert_close(torch.linalg.vector_norm(e, dim=1), torch.ones(2, 35, dtype=torch.float64))
    # Centring is over positions, per image and channel: the projection of the mean is zero.
    centred = x.flatten(2) - x.flatten(2).mean(dim=2, keepdim=True)
    torch.testing.assert_close(e * torch.linalg.vector_norm(centred, dim=1, keepdim=True), centred)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_hard_warp_equals_dense_softmax_at_inference_temperature(dtype):
    frames, reference = _embeddings(3, 32, dtype=dtype)
    warped, similarity = chunked_warp(frames, reference, 1e-10)
    dense_warped, dense_similarity = dense_warp(frames, reference, 1e-10)
    tol = cosine_tol(32, dtype)
    assert_close(similarity, dense_similarity, tol)  # chunked vs (B, N, M) product
    assert_same_warp(warped, dense_warped, similarity, frames, reference, 1e-10, tol)


def test_chunks_do_not_change_the_result(monkeypatch):
    frames, reference = _embeddings(2, 16)
    whole = chunked_warp(frames, reference)
    monkeypatch.setattr(correlation, "CPU_CHUNK_ENTRIES", 2 * 5 * reference.colors.shape[1])  # 5 rows a chunk
    assert correlation.chunk_rows(2, reference.colors.shape[1], frames) == 5
    chunked = chunked_warp(frames, reference)
    tol = cosine_tol(16, torch.float64)
    # The matrix product's summation order may depend on its shape: ulps only.
    assert_close(whole[1], chunked[1], tol)
    # The same argmax, hence the same copied colours, away from near-ties.
    assert_same_warp(whole[0], chunked[0], whole[1], frames, reference,
                     correspondence.INFERENCE_TEMPERATURE, tol)


def test_exact_ties_split_evenly_like_the_official_softmax():
    frames, reference = _embeddings(1, 16)
    phi = reference.features.clone()
    colors = reference.colors.clone()
    best = (frames[0].transpose(0, 1) @ phi).argmax(dim=1)
    # Duplicate each frame-0 winner's embedding elsewhere with another colour: an exact tie.
    twin = (best[0] + 1) % phi.shape[1]
    phi[:, twin] = phi[:, best[0]]
    colors[:, twin] = colors[:, best[0]] + 10.0
    tied = ReferenceEmbedding(phi, colors, reference.grid)
    warped, _ = chunked_warp(frames, tied, 1e-10)
    dense, _ = dense_warp(frames, tied, 1e-10)
    torch.testing.assert_close(warped, dense, rtol=0, atol=1e-12)
    expected = (colors[:, best[0]] + colors[:, twin]) / 2
    torch.testing.assert_close(warped[0, :, 0], expected, rtol=0, atol=1e-12)


def test_near_ties_below_the_underflow_gap_are_soft_like_the_official():
    # Two candidates 2e-10 apart at T=1e-10: weights e^0 and e^-2, not an argmax.
    phi = torch.zeros(2, 3, dtype=torch.float64)
    phi[0, 0] = 1.0
    phi[0, 1] = 1.0 - 2e-10
    phi[1, 2] = 1.0
    colors = torch.tensor([[0.0, 100.0, 50.0], [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64)
    reference = ReferenceEmbedding(phi, colors, (1, 3))
    frames = torch.tensor([[[1.0], [0.0]]], dtype=torch.float64)  # one frame position
    warped, similarity = chunked_warp(frames, reference, 1e-10)
    dense, dense_similarity = dense_warp(frames, reference, 1e-10)
    torch.testing.assert_close(warped, dense, rtol=0, atol=1e-12)
    weight = np.exp(-2.0) / (1 + np.exp(-2.0))
    assert warped[0, 0, 0].item() == pytest.approx(100.0 * weight, rel=1e-6)
    assert torch.equal(similarity, dense_similarity)  # one-hot inputs: the products are exact


@pytest.mark.parametrize("temperature", [0.01, 0.1, 1.0])
def test_soft_warp_equals_dense_softmax(temperature):
    frames, reference = _embeddings(2, 32, seed=3)
    warped, similarity = chunked_warp(frames, reference, temperature)
    dense_warped, dense_similarity = dense_warp(frames, reference, temperature)
    torch.testing.assert_close(warped, dense_warped, rtol=0, atol=1e-6)
    torch.testing.assert_close(similarity, dense_similarity, rtol=0, atol=1e-12)


def test_soft_warp_float32_close_to_float64():
    # float32 cosines carry ~6e-8 of rounding, x 1/T = 100 in the logits: ~1e-5 relative weights.
    frames, reference = _embeddings(2, 32, seed=4)
    single = ReferenceEmbedding(reference.features.float(), reference.colors.float(), reference.grid)
    warped, _ = chunked_warp(frames.float(), single, 0.01)
    dense_warped, _ = dense_warp(frames, reference, 0.01)
    torch.testing.assert_close(warped.double(), dense_warped, rtol=0, atol=2e-3)


def test_warp_upsamples_nearest_by_four_and_picks_the_path():
    frames, reference = _embeddings(2, 16)
    warped, similarity = warp(frames, reference, 1e-10)
    flat_warped, flat_similarity = chunked_warp(frames, reference, 1e-10)
    assert warped.shape == (2, 3, 48, 64) and similarity.shape == (2, 1, 48, 64)
    grid_warped = flat_warped.view(2, 3, *GRID)
    assert torch.equal(warped[:, :, ::4, ::4], grid_warped)
    assert torch.equal(warped[:, :, 3::4, 2::4], grid_warped)
    assert torch.equal(similarity[:, 0, 1::4, 3::4], flat_similarity.view(2, *GRID))
    soft, _ = warp(frames, reference, 0.01)
    torch.testing.assert_close(soft[:, :, ::4, ::4], chunked_warp(frames, reference, 0.01)[0].view(2, 3, *GRID))
    with pytest.raises(ValueError, match="temperature"):
        warp(frames, reference, 0.0)
    with pytest.raises(ValueError, match="share a size"):
        warp(frames[:, :, :-1], reference)


def _peak_rss_growth(fn) -> int | None:
    """Bytes the peak RSS grew during ``fn()`` (Linux only: VmHWM reset via clear_refs)."""
    from pathlib import Path

    def hwm() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise OSError("no VmHWM")

    def rss() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise OSError("no VmRSS")

    try:
        Path("/proc/self/clear_refs").write_text("5")
        before = rss()
    except OSError:
        return None
    fn()
    return hwm() - before


def test_hard_warp_memory_stays_bounded_by_the_chunk():
    # N = 64 x 128 = 8192 positions: a dense float32 correlation would be 256 MiB (x3 with the
    # official's f / T and softmax copies); a chunk is 16 MiB.
    frames, reference = _embeddings(1, 64, grid=(64, 128), dtype=torch.float32, seed=5)
    growth = _peak_rss_growth(lambda: chunked_warp(frames, reference))
    if growth is None:
        pytest.skip("peak RSS cannot be reset on this OS")
    dense_bytes = 8192 * 8192 * 4
    assert growth < dense_bytes / 4, f"peak grew by {growth / 2**20:.0f} MiB"


def test_row_max_argmax_equals_torch_max_with_first_index_on_ties():
    from vidcolor.engines.correlation import row_max_argmax

    corr = torch.randn(50, 6 * 7)
    corr[3, [5, 30]] = 10.0  # tie across reference rows: the first wins
    corr[4, [8, 9]] = 10.0  # tie inside a reference row
    best, index = row_max_argmax(corr, (6, 7))
    expected = corr.max(dim=1)
    assert torch.equal(best, expected.values)
    assert torch.equal(index, expected.indices)
    assert index[3].item() == 5 and index[4].item() == 8


@pytest.mark.parametrize("grid", [(6, 7), None])
def test_row_top_two_gives_the_value_left_without_the_winner(grid):
    from vidcolor.engines.correlation import row_top_two

    corr = torch.randn(2, 40, 6 * 7)
    corr[0, 3, [5, 30]] = 10.0  # tie across reference rows: the runner-up equals the max
    corr[0, 4, [8, 9]] = 10.0  # tie inside a reference row
    corr[1, 5, 12] = 10.0  # a clear winner
    before = corr.clone()
    best, index, second = row_top_two(corr, grid)
    assert torch.equal(corr, before)  # restored when knocked out in place
    expected = corr.max(dim=-1)
    assert torch.equal(best, expected.values) and torch.equal(index, expected.indices)
    independent = corr.sort(dim=-1, descending=True).values[..., 1]  # the second largest
    assert torch.equal(second, independent)
    assert second[0, 3] == 10.0 and second[0, 4] == 10.0 and second[1, 5] < 10.0
