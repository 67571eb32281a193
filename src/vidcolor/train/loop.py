"""The training loop (paper §4): one process, or many under torchrun with DistributedDataParallel.

A step: the generator (correspondence + colorization, DDP) colorizes frames t-1 and t of every
sample; the losses of ``losses.py`` are averaged over the global batch and weighted; AMSGrad
steps the generator; from ``adversarial_after`` on, the discriminator (DDP) steps too. Each
process back-propagates its share of the global batch's mean and DDP sums the gradients, so N
processes with a global batch B compute the step one process computes with B.

Bit for bit, where that can be had: on the CPU each sample is computed on one thread (unless
OMP_NUM_THREADS says otherwise), one process running its samples side by side and summing their
gradients in sample order, so with one sample per process (B = N) DDP repeats one process's
arithmetic exactly. That matters: the paper's losses (argmax-like contextual matching, a
T = 0.01 softmax warp) and AMSGrad's first steps (each weight moves by +-lr whatever its
gradient's size) turn one rounding difference into a visibly different run within a few steps
(measured: 1 vs 2 threads, 0.15 relative after 6 steps).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.nn.parallel import DistributedDataParallel

from vidcolor.devices import resolve_device, resolve_precision
from vidcolor.errors import Interrupted, OptionError, UsageError, WeightsMissingError
from vidcolor.signals import SignalLatch
from vidcolor.train import checkpoint as ckpt
from vidcolor.train import distributed
from vidcolor.train.data import PAPER_CROP, GlobalBatchSampler, TrainingSamples, prepare
from vidcolor.train.discriminator import VideoDiscriminator, discriminator_input
from vidcolor.train.losses import (
    LOSS_NAMES,
    PAPER_WEIGHTS,
    contextual_layers,
    l1_loss,
    perceptual_loss,
    relativistic_lsgan,
    smoothness_loss,
    temporal_loss,
)
from vidcolor.train.model import Generator, lab_to_vgg_rgb, vgg_features

# Paper §4: AMSGrad, beta = (0.5, 0.999), lr 2e-4 for generator and discriminator, no decay.
# (The official train.py uses 1e-5 for the correspondence subnet: ``--lr-correspondence``.)
PAPER_LR = 2e-4
ADAM_BETAS = (0.5, 0.999)
GENERATOR_ADAM_EPS = 1e-5  # official train.py:310-315; the discriminator keeps Adam's 1e-8
DEFAULT_ADVERSARIAL_AFTER = 1000  # warm-up steps before the GAN loss (ours: not published)
DEFAULT_CHECKPOINT_EVERY = 500
INITS = ("devc", "scratch")
# Options a resumed run must share with the run it continues (the rest may change).
RESUME_FIXED = ("data", "batch_size", "lr", "lr_correspondence", "lr_discriminator", "init", "loss_weights",
                "adversarial_after", "seed", "crop", "max_frames_per_video")


@dataclass(frozen=True)
class TrainConfig:
    data: str
    out: str
    steps: int
    batch_size: int = 2
    lr: float = PAPER_LR
    lr_correspondence: float = PAPER_LR
    lr_discriminator: float = PAPER_LR
    init: str = "devc"
    loss_weights: dict = field(default_factory=lambda: dict(PAPER_WEIGHTS))
    adversarial_after: int = DEFAULT_ADVERSARIAL_AFTER
    seed: int = 0
    crop: tuple = PAPER_CROP
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY
    workers: int = 2
    max_frames_per_video: int | None = None
    weights_dir: str | None = None


def parse_loss_weights(text: str | None) -> dict[str, float]:
    """'name=w,...' over the paper's weights; unknown names and negative weights are refused."""
    weights = dict(PAPER_WEIGHTS)
    for part in filter(None, (text or "").split(",")):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in weights:
            raise OptionError(f"--loss-weights: expected name=weight with name in {', '.join(LOSS_NAMES)}, "
                              f"got {part!r}")
        try:
            weights[name] = float(value)
        except ValueError:
            raise OptionError(f"--loss-weights: {name}={value!r} is not a number") from None
        if not weights[name] >= 0:
            raise OptionError(f"--loss-weights: {name} must be >= 0, got {value}")
    return weights


def parse_crop(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W), checked against what the networks accept."""
    from vidcolor.pipeline.presets import parse_size

    try:
        crop = parse_size(text)
    except OptionError:
        raise OptionError(f"--crop must look like HEIGHTxWIDTH (e.g. 216x384), got {text!r}") from None
    check_crop(crop)
    return crop


# The networks run at the crop size: height a multiple of 8 and width of 16 (REFERENCE.md §4-5);
# the discriminator halves six times and its instance norms need 2 positions left: 64 x 128.
CROP_HEIGHT_MULTIPLE, CROP_WIDTH_MULTIPLE = 8, 16
MIN_CROP = (64, 128)


def check_crop(crop: tuple[int, int]) -> None:
    height, width = crop
    if height % CROP_HEIGHT_MULTIPLE or width % CROP_WIDTH_MULTIPLE or height < MIN_CROP[0] or width < MIN_CROP[1]:
        raise OptionError(f"--crop {height}x{width}: the height must be a multiple of {CROP_HEIGHT_MULTIPLE} and "
                          f"the width of {CROP_WIDTH_MULTIPLE}, at least {MIN_CROP[0]}x{MIN_CROP[1]} (the paper's is "
                          f"{PAPER_CROP[0]}x{PAPER_CROP[1]})")


def check_config(config: TrainConfig) -> None:
    check_crop(tuple(config.crop))
    if config.init not in INITS:
        raise OptionError(f"--init must be one of {', '.join(INITS)}, got {config.init!r}")
    if config.steps < 1 or config.batch_size < 1:
        raise OptionError("--steps and --batch-size must be at least 1")
    for name in ("lr", "lr_correspondence", "lr_discriminator"):
        if not getattr(config, name) > 0:
            raise OptionError(f"--{name.replace('_', '-')} must be positive, got {getattr(config, name)}")


def _load_weights(config: TrainConfig):
    from vidcolor.weights import cache
    from vidcolor.weights.convert import load_converted

    directory = Path(config.weights_dir) if config.weights_dir else cache.installed_dir()
    if config.weights_dir is None and not cache.is_installed():
        raise WeightsMissingError(f"{directory}: training needs the installed devc weights (VGG19 always, "
                                  f"both subnets for --init devc); run `vidcolor download-weights`")
    return load_converted(directory)


@contextlib.contextmanager
def _progress(total: int, start: int, quiet: bool, enabled: bool):
    """A rich bar (steps, steps/s, ETA, losses) on a terminal; else nothing per step."""
    if quiet or not enabled or not sys.stderr.isatty():
        yield lambda losses: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from vidcolor.progress import stderr_console

    columns = (TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]:.2f} steps/s"),
               TimeRemainingColumn(), TextColumn("{task.fields[losses]}"))
    with Progress(*columns, console=stderr_console(), transient=True) as progress:
        task = progress.add_task("train", total=total, completed=start, rate=0.0, losses="")
        began, done = time.perf_counter(), 0

        def update(losses: dict[str, float]) -> None:
            nonlocal done
            done += 1
            text = " ".join(f"{name[:4]} {value:.3g}" for name, value in losses.items())
            progress.update(task, advance=1, rate=done / max(time.perf_counter() - began, 1e-9), losses=text)

        yield update


class Trainer:
    """Owns the modules, optimizers and data of one run; ``run`` trains to ``config.steps``."""

    def __init__(self, config: TrainConfig, device: torch.device, dtype: torch.dtype,
                 autocast_dtype: torch.dtype | None, group: distributed.ProcessGroup,
                 notify: Callable[[str], None], cpu_threads: int | None = None):
        self.config, self.device, self.dtype, self.autocast_dtype = config, device, dtype, autocast_dtype
        self.group, self.notify = group, notify
        self.cpu_threads = cpu_threads  # None: leave torch's thread count alone
        self.run_dir = Path(config.out)
        self.weights = config.loss_weights
        torch.manual_seed(config.seed)  # fresh subnets and discriminator: the same on every rank
        self.generator = Generator()
        installed = _load_weights(config)
        self.generator.load_subnets(installed, vgg_only=config.init == "scratch")
        self.discriminator = VideoDiscriminator()
        self.generator.to(device=device, dtype=dtype).train()
        self.discriminator.to(device=device, dtype=dtype).train()
        adam = dict(betas=ADAM_BETAS, amsgrad=True)
        self.optimizer_g = torch.optim.Adam(
            [{"params": self.generator.correspondence.parameters(), "lr": config.lr_correspondence},
             {"params": self.generator.colorization.parameters(), "lr": config.lr}],
            eps=GENERATOR_ADAM_EPS, **adam)
        self.optimizer_d = torch.optim.Adam(self.discriminator.parameters(), lr=config.lr_discriminator, **adam)
        self.step = 0

    # --- state -----------------------------------------------------------------------------
    def state(self) -> dict:
        return {
            "step": self.step,  # the sampler's state: the next global sample is step * batch_size
            "config": {key: _plain(getattr(self.config, key)) for key in RESUME_FIXED},
            "correspondence": self.generator.correspondence.state_dict(),
            "colorization": self.generator.colorization.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "optimizer_g": self.optimizer_g.state_dict(),
            "optimizer_d": self.optimizer_d.state_dict(),
            "rng": {"torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        }

    def restore(self, state: dict) -> None:
        saved = state["config"]
        for key in RESUME_FIXED:
            if saved.get(key) != _plain(getattr(self.config, key)):
                raise OptionError(f"--resume: --{key.replace('_', '-')} was {saved.get(key)!r} in this run, "
                                  f"now {_plain(getattr(self.config, key))!r}; resume with the same options")
        if state["step"] >= self.config.steps:
            raise OptionError(f"--resume: the checkpoint is at step {state['step']}; ask for more --steps")
        self.generator.correspondence.load_state_dict(state["correspondence"])
        self.generator.colorization.load_state_dict(state["colorization"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.optimizer_g.load_state_dict(state["optimizer_g"])
        self.optimizer_d.load_state_dict(state["optimizer_d"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        self.step = int(state["step"])

    def save(self) -> None:
        if self.group.is_main:
            ckpt.save_checkpoint(self.run_dir, self.state())
        distributed.barrier(self.group)

    def export(self) -> Path:
        from vidcolor.weights.convert import converted_layout

        vgg = {name: value for name, value in self.generator.vgg.state_dict().items()
               if name in converted_layout("vgg19_conv")}
        return ckpt.export_final(self.run_dir, {
            "vgg19_conv": vgg,
            "nonlocal_net": self.generator.correspondence.state_dict(),
            "colornet": self.generator.colorization.state_dict(),
        })

    # --- one step --------------------------------------------------------------------------
    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def train_step(self, generator, discriminator, batch: dict) -> dict[str, float]:
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        for key in ("input_l", "truth_lab", "reference_lab", "flow", "mask", "self_reference"):
            batch[key] = batch[key].to(self.dtype)
        adversarial_on = self.step >= self.config.adversarial_after
        weights = torch.tensor([self.weights[name] if (name != "adversarial" or adversarial_on) else 0.0
                                for name in LOSS_NAMES], dtype=self.dtype, device=self.device)
        self.optimizer_g.zero_grad(set_to_none=True)
        separable = self._separable(adversarial_on, len(batch["input_l"]))
        if self.cpu_threads is not None:  # one thread per sample, or all of them for the batch
            wanted = 1 if separable else self.cpu_threads
            if torch.get_num_threads() != wanted:
                torch.set_num_threads(wanted)
        if separable:
            per_sample, ab_prev, ab_cur = self._sample_by_sample(generator, weights, batch)
        else:
            ab_prev, ab_cur, losses = self._generator_losses(generator, batch)
            if not adversarial_on:
                self._backward_generator(weights, losses, batch)
            per_sample, ab_prev, ab_cur = [losses], [ab_prev], [ab_cur]
        per_sample = {name: torch.cat([losses[name] for losses in per_sample]) for name in per_sample[0]}
        ab_prev, ab_cur = torch.cat(ab_prev), torch.cat(ab_cur)
        truth_prev, truth_cur = batch["truth_lab"][:, 0], batch["truth_lab"][:, 1]
        real = discriminator_input(truth_cur[:, :1], truth_cur[:, 1:], truth_prev[:, :1], truth_prev[:, 1:])
        fake = discriminator_input(truth_cur[:, :1], ab_cur, truth_prev[:, :1], ab_prev)
        self.discriminator.requires_grad_(False)  # the generator's step must not touch D
        with torch.set_grad_enabled(adversarial_on), self._autocast():
            scores = self.discriminator(torch.cat((real, fake))).to(self.dtype)
            per_sample["adversarial"] = self._relativistic(scores, generator=True)
        self.discriminator.requires_grad_(True)
        if adversarial_on:
            self._backward_generator(weights, per_sample, batch)
        self.optimizer_g.step()
        local = torch.stack([per_sample[name].mean() for name in LOSS_NAMES]).detach()
        total = (weights * local).sum()
        d_loss = torch.zeros((), dtype=self.dtype, device=self.device)
        if adversarial_on:
            with self._autocast():
                scores = discriminator(torch.cat((real, fake.detach()))).to(self.dtype)
            d_loss = self._relativistic(scores, generator=False).mean()
            self.optimizer_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.optimizer_d.step()
        logged = distributed.average(torch.cat((local, total[None], d_loss.detach()[None])), self.group).tolist()
        result = dict(zip(LOSS_NAMES, logged[: len(LOSS_NAMES)]))
        result["total"], result["discriminator"] = logged[-2], logged[-1]
        return result

    def _separable(self, adversarial_on: bool, local_batch: int) -> bool:
        """One CPU process goes sample by sample where the samples' losses are independent (no
        GAN term yet): the arithmetic of DDP with one sample per process. Under DDP, with the
        GAN term (relativistic means couple the batch) and on a GPU (its kernels are not
        bit-reproducible anyway; batches keep it busy) the local batch goes at once."""
        return (self.device.type == "cpu" and not self.group.distributed and not adversarial_on
                and local_batch > 1)

    def _sample_by_sample(self, generator, weights: torch.Tensor, batch: dict):
        """Each sample's forward and backward on its own (``cpu_threads`` at a time, each on
        one core), then the gradients summed in sample order: what torchrun's processes
        compute with one sample each and their all-reduce adds."""
        params = [p for p in self.generator.parameters() if p.requires_grad]

        def one(i: int):
            part = {k: v[i : i + 1] for k, v in batch.items()}
            prev, cur, losses = self._generator_losses(generator, part)
            grads = torch.autograd.grad(self._generator_share(weights, losses, part), params, allow_unused=True)
            return prev.detach(), cur.detach(), {k: v.detach() for k, v in losses.items()}, grads

        samples = range(len(batch["input_l"]))
        with ThreadPoolExecutor(min(self.cpu_threads or 1, len(samples)), thread_name_prefix="vidcolor-sample") as pool:
            results = list(pool.map(one, samples))
        for index, param in enumerate(params):
            total = None
            for *_, grads in results:
                if grads[index] is not None:
                    total = grads[index] if total is None else total + grads[index]
            param.grad = total
        return [r[2] for r in results], [r[0] for r in results], [r[1] for r in results]

    def _generator_losses(self, generator, part: dict):
        """Frames t-1 and t of ``part``'s samples colorized, and their per-sample losses (all
        but the adversarial one, which needs the discriminator's scores of the whole batch)."""
        truth_cur = part["truth_lab"][:, 1]
        with self._autocast():
            ab_prev, ab_cur, reference_features = generator(part["input_l"], part["reference_lab"],
                                                            part["noise_seed"], part["feature_noise"])
        ab_prev, ab_cur = ab_prev.to(self.dtype), ab_cur.to(self.dtype)
        vgg = self.generator.vgg
        predicted = vgg_features(vgg, lab_to_vgg_rgb(torch.cat((truth_cur[:, :1], ab_cur), dim=1)))
        with torch.no_grad():
            truth_relu5 = vgg_features(vgg, lab_to_vgg_rgb(truth_cur))["relu5_2"]
        losses = {
            "perceptual": perceptual_loss(predicted["relu5_2"], truth_relu5),
            "contextual": contextual_layers(predicted, reference_features),
            "smoothness": smoothness_loss(ab_cur, truth_cur[:, 1:]),
            "temporal": temporal_loss(ab_cur, ab_prev, part["flow"], part["mask"]),
            "l1": l1_loss(ab_cur, truth_cur[:, 1:], part["self_reference"]),
        }
        return ab_prev, ab_cur, losses

    def _generator_share(self, weights: torch.Tensor, losses: dict, part: dict) -> torch.Tensor:
        """``part``'s share of the global batch's weighted mean loss: its samples' mean times
        their fraction of the batch (DDP's hook sums these shares, see run)."""
        names = [name for name in LOSS_NAMES if name in losses]
        means = torch.stack([losses[name].mean() for name in names])
        share = len(part["input_l"]) / self.config.batch_size
        return (weights[[LOSS_NAMES.index(name) for name in names]] * means).sum() * share

    def _backward_generator(self, weights: torch.Tensor, losses: dict, part: dict) -> None:
        self._generator_share(weights, losses, part).backward()

    def _relativistic(self, scores: torch.Tensor, *, generator: bool) -> torch.Tensor:
        real, fake = scores.chunk(2)
        real_mean = distributed.global_mean(real, self.group)
        fake_mean = distributed.global_mean(fake, self.group)
        return relativistic_lsgan(real, fake, real_mean, fake_mean, generator=generator)

    # --- the run ---------------------------------------------------------------------------
    def run(self, sources, quiet: bool) -> dict:
        config = self.config
        dataset = TrainingSamples(sources, tuple(config.crop), config.seed)
        sampler = GlobalBatchSampler(config.batch_size, self.group.rank, self.group.world_size, self.step,
                                     config.steps)
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=config.workers,
                                             pin_memory=self.device.type == "cuda")
        ddp = {"device_ids": [self.device.index]} if self.device.type == "cuda" else {}
        if self.group.distributed:
            generator = DistributedDataParallel(self.generator, **ddp)
            generator.register_comm_hook(state=None, hook=distributed.sum_gradients)
            discriminator = DistributedDataParallel(self.discriminator, **ddp)
        else:
            generator, discriminator = self.generator, self.discriminator
        log_path = self.run_dir / ckpt.LOG_NAME
        if self.group.is_main:
            _truncate_log(log_path, self.step)
        first_step, began = self.step, time.perf_counter()
        with SignalLatch() as stop, _progress(config.steps, self.step, quiet, self.group.is_main) as advance, \
                open(log_path, "a", encoding="utf-8") if self.group.is_main else contextlib.nullcontext() as log:
            for batch in loader:
                started = time.perf_counter()
                losses = self.train_step(generator, discriminator, batch)
                self.step += 1
                if log is not None:
                    line = {"step": self.step, "loss": losses["total"],
                            "losses": {name: losses[name] for name in LOSS_NAMES},
                            "discriminator_loss": losses["discriminator"],
                            "lr": config.lr, "seconds": round(time.perf_counter() - started, 4)}
                    log.write(json.dumps(line) + "\n")
                    log.flush()
                advance({name: losses[name] for name in ("total", *LOSS_NAMES)})
                # A stop is noted (not raised mid-step) and taken between steps, by every process.
                if distributed.any_process(bool(stop.received), self.device, self.group):
                    self.save()
                    code = 143 if stop.received[:1] == [signal.SIGTERM] else 130
                    raise Interrupted(f"stopped at step {self.step}; checkpoint written to "
                                      f"{ckpt.checkpoint_path(self.run_dir)} (continue with --resume)", code)
                if self.step % config.checkpoint_every == 0 and self.step < config.steps:
                    self.save()
            stop.received.clear()  # asked after the last step: the run is done, the end is written anyway
        self.save()
        final = self.export() if self.group.is_main else None
        distributed.barrier(self.group)
        seconds = time.perf_counter() - began
        return {"steps": self.step - first_step, "seconds": seconds,
                "steps_per_second": (self.step - first_step) / max(seconds, 1e-9), "final": final}


def _plain(value):
    """Config values as checkpoint-friendly plain data (tuples become lists)."""
    return list(value) if isinstance(value, tuple) else value


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past ``step`` (a run that died after its last checkpoint), keep the rest."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and json.loads(line)["step"] <= step]
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


def train(config: TrainConfig, *, device: str = "auto", precision: str = "auto", resume: bool = False,
          quiet: bool = False, notify: Callable[[str], None] = lambda message: None) -> dict:
    """Train (or fine-tune) to ``config.steps``; returns steps run, seconds, steps/s and RUN/final."""
    check_config(config)
    torch_device = resolve_device(device)
    dtype, autocast_dtype = resolve_precision(precision, torch_device)
    if autocast_dtype == torch.float16:  # fp16 gradients underflow without loss scaling
        raise OptionError("--precision float16 is not supported for training; use bfloat16 (same speed on "
                          "recent GPUs, no loss scaling needed) or float32")
    group = distributed.init_process_group(torch_device)
    threads = torch.get_num_threads()
    # Torch's thread count is the trainer's to set on the CPU (one per sample, module docstring),
    # unless OMP_NUM_THREADS was given (torchrun sets it to 1 for several processes).
    cpu_threads = threads if torch_device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ else None
    try:
        if cpu_threads is not None and not group.distributed and config.batch_size < threads:
            notify(f"training on the CPU computes each sample on one core: --batch-size "
                   f"{config.batch_size} uses {config.batch_size} of {threads} cores until the GAN term starts")
        if group.distributed and torch_device.type == "cuda":
            torch_device = torch.device("cuda", group.local_rank)
        run_dir = Path(config.out)
        if group.is_main:
            _check_run_dir(run_dir, resume)
        distributed.barrier(group)
        sources = None
        # Rank 0 prepares the data cache; the others then find it in place.
        for turn in (True, False):
            if group.is_main == turn:
                sources = prepare(Path(config.data), run_dir / ckpt.CACHE_NAME, tuple(config.crop),
                                  config.max_frames_per_video,
                                  on_source=(lambda path, cached: None if cached or not group.is_main
                                             else notify(f"preparing {path.name} (frames, flow, occlusion)")))
            distributed.barrier(group)
        trainer = Trainer(config, torch_device, dtype, autocast_dtype, group, notify, cpu_threads=cpu_threads)
        if resume:
            trainer.restore(ckpt.load_checkpoint(run_dir))
        return trainer.run(sources, quiet)
    finally:
        torch.set_num_threads(threads)
        distributed.shutdown(group)


def _check_run_dir(run_dir: Path, resume: bool) -> None:
    has_checkpoint = ckpt.checkpoint_path(run_dir).is_file()
    if resume and not has_checkpoint:
        raise UsageError(f"{run_dir}: no checkpoint to resume from")
    if not resume and (has_checkpoint or (run_dir / ckpt.LOG_NAME).exists()):
        raise UsageError(f"{run_dir}: already holds a run; pass --resume to continue it or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
