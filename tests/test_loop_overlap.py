"""The recurrent loop: results in order, post-processing in a worker thread one batch behind,
confidence means per frame, and the host/device transfer helpers on the CPU."""

from __future__ import annotations

import threading

import numpy as np
import torch

from vidcolor.engines.base import Correspondence
from vidcolor.io.frame import Frame
from vidcolor.pipeline import loop
from vidcolor.pipeline.transfer import to_device, to_host


class CountingEngine:
    """A tiny engine whose outputs encode the frame index and the recurrent state."""

    name = "counting"
    device = torch.device("cpu")
    dtype = torch.float32

    def prepare_reference(self, ref_lab):
        return ref_lab

    def initial_state(self, ref, propagate):
        return torch.zeros(1, 1, 2, 2)

    def correspond(self, frames_l, ref):
        confidence = torch.arange(frames_l.shape[0] * 4, dtype=torch.float32).view(-1, 1, 2, 2)
        return Correspondence(frames_l[:, :, :2, :2].expand(-1, 2, -1, -1), confidence)

    def step(self, frame_l, corr, state):
        state = state + 1  # frame k sees state k
        return corr.warped_ab + 0 * state, state


class RecordingPreset:
    def __init__(self):
        self.threads: list[str] = []

    def prepare_reference(self, rgb):
        return torch.zeros(1, 3, 2, 2)

    def prepare(self, rgb):
        return torch.full((1, 3, 2, 2), float(rgb[0, 0, 0])), None

    def finish(self, engine, ab, lab_work, context, rgb):
        self.threads.append(threading.current_thread().name)
        assert ab.device.type == "cpu" and lab_work.device.type == "cpu"
        return np.full((1, 1, 3), int(ab[0, 0, 0, 0]), np.uint8)


def test_results_stay_in_order_and_are_finished_in_the_worker_thread():
    preset = RecordingPreset()
    frames = [Frame(index=i, rgb=np.full((2, 2, 3), i, np.uint8)) for i in range(10)]
    results = list(loop.colorize_stream(CountingEngine(), preset, frames, np.zeros((2, 2, 3), np.uint8),
                                        propagate=False, batch_size=4))
    assert [r.source.index for r in results] == list(range(10))
    assert [int(r.rgb[0, 0, 0]) for r in results] == list(range(10))
    assert set(preset.threads) and all(name.startswith("vidcolor-post") for name in preset.threads)
    # Frame i of a batch has confidence values 4i..4i+3: mean 4i + 1.5 (batches of 4, 4, 2).
    assert [r.confidence for r in results] == [4 * (i % 4) + 1.5 for i in range(10)]


def test_a_stopped_consumer_leaves_no_worker_running():
    frames = (Frame(index=i, rgb=np.full((2, 2, 3), i, np.uint8)) for i in range(100))
    stream = loop.colorize_stream(CountingEngine(), RecordingPreset(), frames,
                                  np.zeros((2, 2, 3), np.uint8), propagate=False, batch_size=4)
    assert next(stream).source.index == 0
    stream.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("vidcolor-post")]


def test_cpu_transfers_are_plain_copies():
    x = torch.arange(6.0).view(2, 3)
    assert torch.equal(to_device(x, torch.device("cpu"), torch.float64), x.double())
    copy = to_host(x)
    assert copy.event is None and torch.equal(copy.get(), x)


def test_stage_times_synchronise_before_reading_the_clock():
    calls = []
    times = loop.StageTimes(synchronize=lambda: calls.append(1))
    times.add("step", times.add("decode", 0.0))
    assert len(calls) == 2 and set(times.seconds) == {"decode", "step"}
