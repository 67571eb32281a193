"""`vidcolor train` end to end on tiny clips with the seeded weights: log, checkpoint, resume,
torchrun (2 processes, gloo) against one process, and RUN/final colorizing through the devc engine.

The runs are tiny (64x128 crops, 2-3 steps of a global batch of 2) to stay fast. The default
run (float32, before the GAN term) must equal torchrun's bit for bit: the same per-sample
arithmetic on one thread, the same two gradients summed (README, "The same bits"). With the GAN
term on from step 1 the batch goes at once and only the step is the same: that run is float64,
where the only difference is summation order (~1e-16 relative in the gradients), so 2 steps
agree to 1e-4 relative (the issue's bar).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from clips import make_clip, pattern_frame, write_png
from vidcolor.cli import app
from vidcolor.train.loop import PAPER_LR
from vidcolor.train.losses import LOSS_NAMES

TINY = ["--steps", "2", "--batch-size", "2", "--crop", "64x128", "--seed", "7", "--workers", "0",
        "--adversarial-after", "1", "--precision", "float64", "--device", "cpu", "-q"]
DDP_REL_TOL = 1e-4  # the bar; float64 rounding is ~1e-12 here


@pytest.fixture
def data_dir(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    make_clip(folder / "clip.mp4", n_frames=4, size=(160, 96))
    write_png(folder / "still.png", pattern_frame(5, 160, 96))
    return folder


def final_weights(run: Path) -> dict[str, torch.Tensor]:
    from vidcolor.weights.convert import load_converted

    return {f"{kind}/{name}": value for kind, tensors in load_converted(run / "final").items()
            for name, value in tensors.items()}


def max_relative_difference(a: dict, b: dict) -> float:
    """Per tensor: max |a - b| over max |b|; the worst tensor."""
    return max(((a[k].double() - b[k].double()).abs().max() / b[k].double().abs().max().clamp_min(1e-30)).item()
               for k in b)


def drop_checkpoint(run: Path) -> None:
    """Checked, then deleted: a float64 checkpoint of these networks is 1.6 GB and this test makes three."""
    path = run / "checkpoint.pt"
    assert path.is_file()
    path.unlink()


def invoke(*args: str):
    return CliRunner().invoke(app, ["train", *args])


def test_train_log_resume_torchrun_and_colorize(devc_weights, data_dir, tmp_path):
    straight = tmp_path / "straight"
    result = invoke("--data", str(data_dir), "--out", str(straight), *TINY)
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (straight / "log.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2]
    for line in lines:
        assert set(line["losses"]) == set(LOSS_NAMES)
        assert all(math.isfinite(v) for v in line["losses"].values())
        assert line["lr"] == pytest.approx(2e-4) and line["seconds"] > 0
    assert lines[0]["discriminator_loss"] == 0.0 and lines[1]["discriminator_loss"] > 0  # GAN from step 1
    drop_checkpoint(straight)

    # VGG stays frozen; both subnets moved.
    from vidcolor.weights.convert import load_converted

    installed = load_converted(devc_weights)
    trained = load_converted(straight / "final")
    assert all(torch.equal(installed["vgg19_conv"][k], v) for k, v in trained["vgg19_conv"].items())
    for kind in ("nonlocal_net", "colornet"):
        assert any(not torch.equal(installed[kind][k], v) for k, v in trained[kind].items())

    # 1 step, then --resume to 2: the same run, bit for bit (same process, same arithmetic).
    resumed = tmp_path / "resumed"
    one = [a if a != "2" or i != 1 else "1" for i, a in enumerate(TINY)]  # --steps 1
    assert invoke("--data", str(data_dir), "--out", str(resumed), *one).exit_code == 0
    result = invoke("--data", str(data_dir), "--out", str(resumed), "--resume", *TINY)
    assert result.exit_code == 0, result.output
    assert max_relative_difference(final_weights(resumed), final_weights(straight)) == 0.0
    drop_checkpoint(resumed)
    assert [json.loads(l)["step"] for l in (resumed / "log.jsonl").read_text().splitlines()] == [1, 2]

    # torchrun, 2 processes of 1 sample each (gloo): the global batch of 2 gives the same step.
    distributed = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "vidcolor", "train", "--data", str(data_dir), "--out", str(distributed), *TINY]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert max_relative_difference(final_weights(distributed), final_weights(straight)) <= DDP_REL_TOL

    # RUN/final is what the devc engine loads: colorize a few frames with it.
    from vidcolor import Colorizer

    colorizer = Colorizer(engine="devc", device="cpu", weights_dir=straight / "final")
    frames = [pattern_frame(i, 128, 64) for i in range(2)]
    out = list(colorizer.colorize_frames(frames, pattern_frame(0, 128, 64), size=(64, 128)))
    assert len(out) == 2 and out[0].shape == (64, 128, 3) and out[0].dtype == np.uint8


def test_torchrun_repeats_one_process_bit_for_bit(devc_weights, data_dir, tmp_path, monkeypatch):
    """The default run (float32, GAN not yet on): one process of 2 samples and torchrun's 2
    processes of 1 compute each sample with one thread and sum the same two gradients, so the
    weights are equal bit for bit, however sensitive the losses are to rounding."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # the defaults, as a user runs them
    args = ["--steps", "3", "--batch-size", "2", "--crop", "64x128", "--seed", "7", "--workers", "0",
            "--device", "cpu", "-q"]
    straight = tmp_path / "straight"
    result = invoke("--data", str(data_dir), "--out", str(straight), *args)
    assert result.exit_code == 0, result.output
    distributed = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "vidcolor", "train", "--data", str(data_dir), "--out", str(distributed), *args]
    finished = subprocess.run(command, env=dict(os.environ), capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    one, two = final_weights(straight), final_weights(distributed)
    assert one.keys() == two.keys()
    assert all(torch.equal(one[k], two[k]) for k in one)  # exact by construction (docstring)
    from vidcolor.weights.convert import load_converted

    installed = load_converted(devc_weights)["colornet"]
    # It trained: AMSGrad's first step moves a weight with any gradient by about lr, far above
    # float32 rounding of weights of order 1 (~1e-7).
    moved = max(float((installed[k] - one[f"colornet/{k}"]).abs().max()) for k in installed)
    assert moved > 0.5 * PAPER_LR


def test_cpu_threads_one_per_sample_then_all_for_the_coupled_batch(devc_weights, data_dir, tmp_path,
                                                                  monkeypatch):
    """Before the GAN term each sample runs on one thread; once it couples the batch, the batch
    gets every thread torch had (a run must not fall to one core for most of its steps)."""
    from vidcolor.train.loop import Trainer

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = torch.get_num_threads()
    seen = []
    original = Trainer._generator_losses

    def recording(self, generator, part):
        seen.append((self.step, len(part["input_l"]), torch.get_num_threads()))
        return original(self, generator, part)

    monkeypatch.setattr(Trainer, "_generator_losses", recording)
    result = invoke("--data", str(data_dir), "--out", str(tmp_path / "run"), *TINY)  # GAN from step 1
    assert result.exit_code == 0, result.output
    assert sorted(seen) == [(0, 1, 1), (0, 1, 1), (1, 2, cores)]
    assert torch.get_num_threads() == cores  # given back after the run


def test_resume_refuses_changed_options(devc_weights, data_dir, tmp_path):
    run = tmp_path / "run"
    one = ["--steps", "1", "--batch-size", "2", "--crop", "64x128", "--workers", "0", "--device", "cpu", "-q"]
    assert invoke("--data", str(data_dir), "--out", str(run), *one).exit_code == 0
    again = invoke("--data", str(data_dir), "--out", str(run), *one)
    assert again.exit_code == 2 and "already holds a run" in again.output
    changed = invoke("--data", str(data_dir), "--out", str(run), "--resume", *one[:-3], "--seed", "9", "-q")
    assert changed.exit_code == 2 and "--seed" in changed.output


@pytest.mark.parametrize("args, message", [
    (["--crop", "60x128"], "--crop 60x128"),
    (["--crop", "big"], "--crop must look like"),
    (["--loss-weights", "colour=1"], "--loss-weights"),
    (["--loss-weights", "l1=-1"], "must be >= 0"),
    (["--init", "imagenet"], "--init must be one of"),
])
def test_bad_options_are_one_line_errors(tmp_path, args, message):
    result = invoke("--data", str(tmp_path), "--out", str(tmp_path / "run"), *args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output


def test_missing_weights_are_named(data_dir, tmp_path):
    result = invoke("--data", str(data_dir), "--out", str(tmp_path / "run"), "--crop", "64x128", "--workers", "0")
    assert result.exit_code == 2 and "vidcolor download-weights" in result.output


def test_ctrl_c_checkpoints_the_last_finished_step(devc_weights, data_dir, tmp_path):
    import signal
    import time

    run = tmp_path / "run"
    command = [sys.executable, "-m", "vidcolor", "train", "--data", str(data_dir), "--out", str(run),
               "--steps", "1000", "--batch-size", "1", "--crop", "64x128", "--workers", "0", "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = run / "log.jsonl"
    deadline = time.monotonic() + 600
    while not (log.is_file() and log.read_text().strip()) and time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 130, stderr[-2000:]
    assert "checkpoint written" in stderr and "--resume" in stderr and "Traceback" not in stderr
    steps = len(log.read_text().splitlines())
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert state["step"] == steps >= 1
