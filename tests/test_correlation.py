"""The shared correlation (engines/correlation.py) against the dense formulation, computed here."""

from __future__ import annotations

import pytest
import torch

from vidcolor.engines import correlation
from vidcolor.engines.correlation import centred_cosine, correlate_and_warp


def _case(batch=3, channels=16, frame_n=70, ref_n=48, seed=0):
    generator = torch.Generator().manual_seed(seed)
    frames = centred_cosine(torch.randn(batch, channels, frame_n, generator=generator, dtype=torch.float64))
    ref = centred_cosine(torch.randn(1, channels, ref_n, generator=generator, dtype=torch.float64))[0]
    colors = torch.randn(3, ref_n, generator=generator, dtype=torch.float64) * 40
    return frames, ref, colors


def _dense(frames, ref, colors, temperature):
    """Independent: the full matrix, einsum and softmax (or one-hot) written out here."""
    corr = torch.einsum("bcn,cm->bnm", frames, ref)
    if temperature is None:
        weights = torch.nn.functional.one_hot(corr.argmax(dim=2), ref.shape[1]).double()
    else:
        weights = torch.exp((corr - corr.amax(dim=2, keepdim=True)) / temperature)
        weights = weights / weights.sum(dim=2, keepdim=True)
    return torch.einsum("bnm,km->bkn", weights, colors), corr.amax(dim=2)


def _with_ties(frames, ref, colors):
    """Give frame 0's first position an exact tie: its winner duplicated with another colour."""
    ref, colors = ref.clone(), colors.clone()
    winner = int((frames[0, :, 0] @ ref).argmax())
    twin = (winner + 1) % ref.shape[1]
    ref[:, twin] = ref[:, winner]
    colors[:, twin] = colors[:, winner] + 10.0
    return ref, colors, (colors[:, winner] + colors[:, twin]) / 2


@pytest.mark.parametrize("masked, grid", [(False, None), (True, None), (False, (6, 8))])
def test_near_zero_temperature_splits_exact_ties_like_the_softmax(masked, grid):
    frames, ref, colors = _case()
    ref, colors, expected = _with_ties(frames, ref, colors)
    warped, confidence = correlate_and_warp(frames, ref, colors, 1e-10, rows=9, masked=masked,
                                            grid=grid)
    dense_warped, dense_confidence = _dense(frames, ref, colors, 1e-10)
    # Weights are exactly 1, 1/2 or 0 either way: only the colour sums' rounding differs.
    torch.testing.assert_close(warped, dense_warped, rtol=0, atol=1e-12)
    torch.testing.assert_close(warped[0, :, 0], expected, rtol=0, atol=1e-12)
    # The confidence is a max of the same dot products (summation order may differ: ulps).
    torch.testing.assert_close(confidence, dense_confidence, rtol=0, atol=1e-14)


@pytest.mark.parametrize("temperature", [None, 0.05])
def test_batched_chunks_equal_the_dense_warp_frame_by_frame(temperature):
    frames, ref, colors = _case(seed=1)
    warped, confidence = correlate_and_warp(frames, ref, colors, temperature, rows=11, grid=(6, 8))
    for b in range(frames.shape[0]):  # each frame alone, in the dense form
        dense_warped, dense_confidence = _dense(frames[b:b + 1], ref, colors, temperature)
        # float64 softmax at T = 0.05: logits up to 40, weights exact to ~1e-14 relative.
        torch.testing.assert_close(warped[b:b + 1], dense_warped, rtol=0, atol=1e-9)
        torch.testing.assert_close(confidence[b:b + 1], dense_confidence, rtol=0, atol=1e-14)


def test_half_precision_embeddings_are_computed_in_float32():
    x = torch.randn(2, 8, 30).bfloat16()
    embedded = centred_cosine(x)
    assert embedded.dtype == torch.float32
    torch.testing.assert_close(embedded, centred_cosine(x.float()))


def test_cpu_chunks_hold_the_cpu_budget_over_the_whole_batch(monkeypatch):
    monkeypatch.setattr(correlation, "CPU_CHUNK_ENTRIES", 4 * 100 * 7)
    assert correlation.chunk_rows(4, 100, torch.zeros(1)) == 7
    assert correlation.chunk_rows(4, 10**9, torch.zeros(1)) == 1  # never zero rows


def test_bad_shapes_and_temperatures_are_refused():
    frames, ref, colors = _case()
    with pytest.raises(ValueError, match="disagree"):
        correlate_and_warp(frames, ref[:-1], colors, None)
    with pytest.raises(ValueError, match="temperature"):
        correlate_and_warp(frames, ref, colors, -1.0)


def test_gpu_chunks_are_sized_from_free_memory(monkeypatch):
    class OnCuda:  # stands in for a CUDA tensor: only its device and element size are read
        device = torch.device("cuda", 0)

        @staticmethod
        def element_size():
            return 4

    free = 8 * 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (free, 2 * free))
    entries = int(free * correlation.GPU_FREE_MEMORY_FRACTION) // (4 * correlation.BUFFERS_PER_ENTRY)
    assert correlation.chunk_rows(4, 5184, OnCuda()) == entries // (4 * 5184)
    free = 2**50  # a huge card: capped
    assert correlation.chunk_rows(1, 5184, OnCuda()) == correlation.GPU_MAX_CHUNK_ENTRIES // 5184
