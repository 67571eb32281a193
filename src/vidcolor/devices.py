"""Device and precision choice, checked once with messages that say what to do instead."""

from __future__ import annotations

import torch

from vidcolor.errors import OptionError
from vidcolor.options import DEVICES, PRECISIONS

HALF_PRECISIONS = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA, then MPS, then CPU; an explicit choice must be available."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise OptionError(f"--device must be one of {', '.join(DEVICES)} (or cuda:N), got {name!r}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise OptionError(f"--device {name} was requested but no CUDA GPU is available; use --device cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise OptionError("--device mps was requested but Apple MPS is not available; use --device cpu")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> tuple[torch.dtype, torch.dtype | None]:
    """-> (compute dtype of the parameters, autocast dtype or None).

    Half precisions run as CUDA autocast over float32 parameters; on the CPU they are refused
    (slower than float32 there, and not what the paper's numbers were made with).
    """
    if name not in PRECISIONS:
        raise OptionError(f"--precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name in ("auto", "float32"):
        return torch.float32, None
    if name == "float64":
        if device.type == "mps":
            raise OptionError("--precision float64 is not supported on MPS; use --device cpu")
        return torch.float64, None
    if device.type != "cuda":
        raise OptionError(
            f"--precision {name} needs a CUDA GPU (autocast); on {device.type} use float32"
        )
    return torch.float32, HALF_PRECISIONS[name]
