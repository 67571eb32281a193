"""Training data: pseudo-video flow exactness, the flow/occlusion cache, per-index determinism, sharding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clips import make_clip, pattern_frame, write_png
from vidcolor.errors import InputError, OptionError
from vidcolor.motion.flow import consistency_mask, estimate_flow, warp
from vidcolor.train import data

CROP = (64, 128)


def test_pseudo_motion_flows_are_exact_inverses():
    # frame t = warp(frame t-1, backward); the forward flow must carry frame t back onto frame
    # t-1's grid: backward(q + forward(q)) = -forward(q) wherever q + forward(q) is inside.
    backward, forward = data.pseudo_motion(np.random.default_rng(3), CROP)
    rows, cols = np.mgrid[0 : CROP[0], 0 : CROP[1]]
    landing_rows = rows + forward[0].numpy()
    landing_cols = cols + forward[1].numpy()
    inside = data._inside(forward).numpy()
    assert inside.mean() > 0.8  # a small motion: most of the frame stays in view
    round_trip = warp(backward, forward).numpy() + forward.numpy()  # A(A^-1 q) - q = 0
    # The backward flow is affine in p, so its bilinear interpolation is exact up to float32
    # rounding of coordinates ~1e2: 1e-3 px.
    assert np.abs(round_trip[:, inside]).max() < 1e-3
    assert np.isfinite(landing_rows).all() and np.isfinite(landing_cols).all()


def test_pseudo_video_frame_warps_back_to_its_previous(tmp_path):
    still = tmp_path / "data" / "still.png"
    still.parent.mkdir()
    write_png(still, pattern_frame(2, 200, 120))
    sources = data.prepare(still.parent, tmp_path / "cache", CROP)
    sample = data.TrainingSamples(sources, CROP, seed=1)[0]
    truth = sample["truth_lab"]  # (2, 3, H, W) centred Lab of t-1, t
    carried = warp(truth[1], sample["flow"])
    mask = sample["mask"][0] > 0
    # Away from the moving square's edges the pattern is smooth: the carried frame t matches
    # frame t-1 within a few Lab units (bilinear resampling of a uint8 picture).
    error = (carried - truth[0]).abs().amax(dim=0)[mask]
    assert torch.quantile(error, 0.9) < 3.0


def test_video_cache_holds_flow_and_occlusion(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    make_clip(folder / "clip.mp4", n_frames=4, size=(160, 96))
    notes = []
    sources = data.prepare(folder, tmp_path / "cache", CROP, on_source=lambda p, cached: notes.append(cached))
    (source,) = sources
    assert source.frames == 4
    frames = np.load(source.directory / "frames.npy")
    flow = np.load(source.directory / "flow.npy")
    mask = np.load(source.directory / "mask.npy")
    height, width = data.stored_size(96, 160, CROP)
    assert frames.shape == (4, height, width, 3) and flow.shape == (3, 2, height, width)
    assert mask.shape == (3, height, width) and mask.mean() > 0.5
    # The cache holds what vidcolor.motion.flow computes on the cached frames (its accuracy is
    # test_flow.py's business): the flow t-1 -> t on t-1's grid and the forward-backward mask.
    lum = [data._luminance(frame) for frame in frames[1:3]]
    forward = estimate_flow(lum[0], lum[1])
    # float16 storage: 11-bit mantissa, relative rounding <= 2^-11 (plus an absolute floor).
    np.testing.assert_allclose(flow[1], forward, rtol=2 ** -11, atol=1e-3)
    np.testing.assert_array_equal(mask[1] > 0, consistency_mask(forward, estimate_flow(lum[1], lum[0])))
    again = data.prepare(folder, tmp_path / "cache", CROP, on_source=lambda p, cached: notes.append(cached))
    assert again == sources and notes == [False, True]


def test_samples_depend_only_on_seed_and_index(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    make_clip(folder / "clip.mp4", n_frames=4, size=(160, 96))
    write_png(folder / "still.png", pattern_frame(1, 160, 96))
    sources = data.prepare(folder, tmp_path / "cache", CROP)
    first = data.TrainingSamples(sources, CROP, seed=5)
    second = data.TrainingSamples(sources, CROP, seed=5)
    for index in (7, 0, 3):  # any order, any instance: the same sample
        a, b = first[index], second[index]
        assert all(torch.equal(a[k], b[k]) for k in a)
    other = data.TrainingSamples(sources, CROP, seed=6)[7]
    assert not torch.equal(other["input_l"], first[7]["input_l"])
    # One epoch visits every (video, t) pair and still exactly once.
    assert sorted(first.item_of(i) for i in range(len(first.items))) == sorted(first.items)


def test_global_batch_is_split_over_processes():
    one = list(data.GlobalBatchSampler(4, 0, 1, start_step=2, steps=4))
    shards = [list(data.GlobalBatchSampler(4, rank, 2, start_step=2, steps=4)) for rank in (0, 1)]
    assert one == [[8, 9, 10, 11], [12, 13, 14, 15]]
    assert [a + b for a, b in zip(*shards)] == one
    with pytest.raises(OptionError, match="multiple of the number of processes"):
        data.GlobalBatchSampler(3, 0, 2, 0, 1)


def test_empty_data_folder_is_refused(tmp_path):
    with pytest.raises(InputError, match="no videos"):
        data.scan_data(tmp_path)
