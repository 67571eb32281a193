"""What a run directory holds, written so that a crash never leaves a half-written file.

    RUN/log.jsonl        one JSON line per step (loop.py)
    RUN/checkpoint.pt    the latest training state: both subnets, the discriminator, both
                         optimizers, the step (the sampler's whole state), RNG states, the config
    RUN/final/           the trained weights as converted safetensors, the layout
                         ``vidcolor colorize --engine devc --weights-dir RUN/final`` loads
    RUN/cache/           the prepared data (frames, flow, occlusion masks)

Every file appears by one rename of a finished temporary file (same folder, so same filesystem).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch

from vidcolor.errors import WeightsError
from vidcolor.weights.convert import save_converted

CHECKPOINT_NAME = "checkpoint.pt"
LOG_NAME = "log.jsonl"
FINAL_NAME = "final"
CACHE_NAME = "cache"


def checkpoint_path(run: Path) -> Path:
    return Path(run) / CHECKPOINT_NAME


def save_checkpoint(run: Path, state: Mapping[str, Any]) -> Path:
    """torch.save to a temporary file, fsync, then rename over the previous checkpoint."""
    target = checkpoint_path(run)
    partial = target.with_name(target.name + ".partial")
    with open(partial, "wb") as handle:
        torch.save(dict(state), handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, target)
    return target


def load_checkpoint(run: Path) -> dict[str, Any]:
    """The latest checkpoint (tensors and plain data only: ``weights_only=True``)."""
    path = checkpoint_path(run)
    if not path.is_file():
        raise WeightsError(f"{path}: no checkpoint to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure to deserialise means a bad file
        raise WeightsError(f"{path}: corrupt checkpoint ({str(error).splitlines()[0][:200]})") from None


def export_final(run: Path, weights: Mapping[str, Mapping[str, torch.Tensor]]) -> Path:
    """Converted safetensors for each checkpoint kind into RUN/final, replaced in one rename."""
    target = Path(run) / FINAL_NAME
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for kind, tensors in weights.items():
        save_converted(partial, kind, {name: value.detach().float().cpu() for name, value in tensors.items()})
    if target.exists():
        shutil.rmtree(target)
    os.replace(partial, target)
    return target
