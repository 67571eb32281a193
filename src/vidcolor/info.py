"""``vidcolor info``: what this machine and this install can do, for bug reports and set-up.

Devices found and the precisions each accepts (asked of ``devices.resolve_precision``, so the
answer is what a run would do), whether bfloat16 has hardware support there or is emulated,
the devc weights (installed? verified? where?), the encoders FFmpeg offers for our codecs, and
the versions of the libraries that decide the results.
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

# /proc/cpuinfo flags of CPUs that compute bfloat16 natively: AMX tiles (Sapphire Rapids and
# later) or the AVX-512 BF16 extension (Cooper Lake, Zen 4 and later). Without either, oneDNN
# emulates bfloat16 with float32 arithmetic.
CPU_BF16_FLAGS = {"amx_bf16": "AMX", "avx512_bf16": "AVX512-BF16"}
CPUINFO = Path("/proc/cpuinfo")
# CUDA GPUs compute bfloat16 natively from compute capability 8.0 (Ampere).
CUDA_NATIVE_BF16_MAJOR = 8


@dataclass
class DeviceReport:
    name: str  # what --device takes
    description: str
    precisions: list[str]  # what --precision accepts on it (besides auto)
    bfloat16: str  # "native (AVX512-BF16)", "emulated", ...


@dataclass
class WeightsReport:
    path: str
    installed: bool
    verified: bool
    detail: str


@dataclass
class InfoReport:
    version: str
    devices: list[DeviceReport] = field(default_factory=list)
    weights: WeightsReport | None = None
    encoders: dict[str, str | None] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def cpu_flags(cpuinfo: Path = CPUINFO) -> set[str]:
    """The feature flags of the first CPU in /proc/cpuinfo (empty where there is none)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return set(value.split())
    return set()


def cpu_bfloat16(flags: set[str]) -> str:
    found = [name for flag, name in CPU_BF16_FLAGS.items() if flag in flags]
    return f"native ({', '.join(found)})" if found else "emulated (no AMX or AVX512-BF16)"


def cpu_name(cpuinfo: Path = CPUINFO) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def accepted_precisions(device) -> list[str]:
    """The explicit --precision values a run on ``device`` accepts."""
    from vidcolor.devices import resolve_precision
    from vidcolor.errors import OptionError
    from vidcolor.options import PRECISIONS

    accepted = []
    for name in PRECISIONS:
        if name == "auto":
            continue
        try:
            resolve_precision(name, device)
        except OptionError:
            continue
        accepted.append(name)
    return accepted


def find_devices() -> list[DeviceReport]:
    import torch

    cpu = torch.device("cpu")
    found = [DeviceReport("cpu", f"{cpu_name()}, {torch.get_num_threads()} threads",
                          accepted_precisions(cpu), cpu_bfloat16(cpu_flags()))]
    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            device = torch.device("cuda", index)
            major, minor = torch.cuda.get_device_capability(index)
            memory = torch.cuda.get_device_properties(index).total_memory / 2**30
            native = major >= CUDA_NATIVE_BF16_MAJOR
            found.append(DeviceReport(
                f"cuda:{index}",
                f"{torch.cuda.get_device_name(index)}, compute {major}.{minor}, {memory:.0f} GiB",
                accepted_precisions(device),
                "native" if native else f"emulated (compute capability < {CUDA_NATIVE_BF16_MAJOR}.0)"))
    if torch.backends.mps.is_available():
        device = torch.device("mps")
        found.append(DeviceReport("mps", "Apple Metal", accepted_precisions(device), "native"))
    return found


def weights_report(verify: bool = True) -> WeightsReport:
    """The installed devc weights; ``verify`` re-checks their SHA-256 and layout."""
    from vidcolor.errors import VidcolorError
    from vidcolor.weights import cache, download

    path = cache.installed_dir()
    if not cache.is_installed():
        return WeightsReport(str(path), False, False,
                             "not installed (run `vidcolor download-weights`)")
    if not verify:
        return WeightsReport(str(path), True, False, "installed, not verified (--no-verify)")
    try:
        lines = download.verify()
    except VidcolorError as error:
        return WeightsReport(str(path), True, False, f"verification failed: {error}")
    return WeightsReport(str(path), True, True,
                         f"verified: {len(lines)} checkpoints, SHA-256 and layout")


def available_encoders() -> dict[str, str | None]:
    """Our video codecs -> FFmpeg's encoder name, or None where this FFmpeg lacks it."""
    import av

    from vidcolor.io.writer import VIDEO_ENCODERS

    found = {}
    for codec, encoder in VIDEO_ENCODERS.items():
        try:
            av.codec.Codec(encoder, "w")
        except Exception:  # noqa: BLE001 - PyAV raises its own errors for unknown codecs
            found[codec] = None
        else:
            found[codec] = encoder
    return found


def library_versions() -> dict[str, str]:
    import av
    import numpy
    import torch

    ffmpeg = getattr(av, "ffmpeg_version_info", None)
    libavcodec = ".".join(str(part) for part in av.library_versions.get("libavcodec", ()))
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "PyAV": av.__version__,
        "FFmpeg": f"{ffmpeg or 'unknown'} (libavcodec {libavcodec})",
    }


def collect(verify: bool = True) -> InfoReport:
    from vidcolor import __version__

    return InfoReport(version=__version__, devices=find_devices(), weights=weights_report(verify),
                      encoders=available_encoders(), versions=library_versions())


def render_lines(report: InfoReport) -> list[str]:
    """The report as plain lines (one fact per line; no table, so it pastes into an issue)."""
    lines = [f"vidcolor {report.version}", "devices:"]
    for device in report.devices:
        lines.append(f"  {device.name}: {device.description}")
        lines.append(f"    precisions: {', '.join(device.precisions) or 'none'}; "
                     f"bfloat16 hardware: {device.bfloat16}")
    weights = report.weights
    lines += ["devc weights:", f"  path: {weights.path}", f"  {weights.detail}"]
    lines.append("encoders:")
    for codec, encoder in report.encoders.items():
        lines.append(f"  {codec}: {encoder or 'not available in this FFmpeg'}")
    lines.append("versions:")
    lines += [f"  {name}: {version}" for name, version in report.versions.items()]
    return lines
