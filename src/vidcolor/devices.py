"""Device and precision choice, checked once with messages that say what to do instead."""

from __future__ import annotations

import torch

from vidcolor.errors import OptionError
from vidcolor.options import DEVICES, PRECISIONS

HALF_PRECISIONS = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def native_cpu_bf16(flags: set[str] | None = None) -> str | None:
    """The instruction set that runs bf16 natively on this CPU ('AMX', 'AVX512-BF16'), or None.

    ``flags``: /proc/cpuinfo's feature flags (default: this machine's, ``info.cpu_flags``).
    Without AMX or AVX512-BF16, oneDNN emulates bf16 with float32 arithmetic: slower.
    """
    from vidcolor import info

    flags = info.cpu_flags() if flags is None else flags
    found = [name for flag, name in info.CPU_BF16_FLAGS.items() if flag in flags]
    return found[0] if found else None


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
    if name.startswith("cuda:"):
        index = name.partition(":")[2]
        count = torch.cuda.device_count()
        if not index.isdigit() or int(index) >= count:
            raise OptionError(f"--device {name}: this machine has {count} CUDA GPU(s), "
                              f"cuda:0 to cuda:{count - 1}")
    if name == "mps" and not torch.backends.mps.is_available():
        raise OptionError("--device mps was requested but Apple MPS is not available; use --device cpu")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> tuple[torch.dtype, torch.dtype | None]:
    """-> (compute dtype of the parameters, half dtype or None).

    Half precisions run over float32 parameters: CUDA autocast; on a CPU, bfloat16 where the
    CPU computes it natively (AMX or AVX512-BF16, ``native_cpu_bf16``), refused elsewhere (it
    would be emulated, slower than float32). ``auto`` is exact float32 everywhere.
    """
    if name not in PRECISIONS:
        raise OptionError(f"--precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name in ("auto", "float32"):
        return torch.float32, None
    if name == "float64":
        if device.type == "mps":
            raise OptionError("--precision float64 is not supported on MPS; use --device cpu")
        return torch.float64, None
    if device.type == "cuda":
        return torch.float32, HALF_PRECISIONS[name]
    if name == "bfloat16" and device.type == "cpu":
        if native_cpu_bf16():
            return torch.float32, torch.bfloat16
        raise OptionError("--precision bfloat16: this CPU has no native bfloat16 (AMX or "
                          "AVX512-BF16), so it would be emulated and slower than float32; "
                          "use float32")
    raise OptionError(
        f"--precision {name} needs a CUDA GPU (autocast); on {device.type} use float32"
    )


def configure_cuda(device: torch.device, allow_tf32: bool = False) -> None:
    """Decide the GPU's global switches explicitly instead of inheriting torch's defaults.

    cuDNN benchmark mode: a clip has one fixed size, so picking the fastest algorithm once
    pays from the second frame on. TF32: float32 means IEEE float32 unless asked otherwise
    (torch's matmul default already is, cuDNN's convolutions default to TF32).
    """
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    torch.backends.cudnn.allow_tf32 = allow_tf32
