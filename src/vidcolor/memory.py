"""Peak resident memory of this process, for ``--report`` and the benchmarks.

Linux's ``VmHWM`` (/proc/self/status) is the high-water mark of this process's own address
space; ``ru_maxrss`` is not: the kernel carries it across ``execve``, so a process started from
a large one (a test runner, a notebook, a cluster worker) reports its parent's peak. ``VmHWM``
can also be reset (``5`` written to /proc/self/clear_refs, Linux >= 4.0), which gives each
file of a batch its own figure. ``ru_maxrss`` is the fallback where there is no /proc (macOS).
"""

from __future__ import annotations

import sys
from pathlib import Path

PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")
# Value that resets the peak RSS (VmHWM) in /proc/self/clear_refs (see proc(5)).
CLEAR_REFS_RESET_PEAK_RSS = "5"
KIB = 1024


def _proc_status_kib(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (e.g. VmHWM, VmRSS), or None off Linux."""
    try:
        text = PROC_STATUS.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def current_rss_bytes() -> int | None:
    """Resident set size now, or None where /proc is missing."""
    kib = _proc_status_kib("VmRSS")
    return None if kib is None else kib * KIB


def peak_rss_bytes() -> int | None:
    """Peak resident set size since start or the last ``reset_peak_rss``; None where neither
    /proc nor the ``resource`` module exists (Windows)."""
    kib = _proc_status_kib("VmHWM")
    if kib is not None:
        return kib * KIB
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # getrusage(2): ru_maxrss is in bytes on macOS, in KiB on Linux and the BSDs.
    return peak if sys.platform == "darwin" else peak * KIB


def reset_peak_rss() -> bool:
    """Reset the peak RSS mark to the current RSS; False where the OS does not allow it."""
    try:
        PROC_CLEAR_REFS.write_text(CLEAR_REFS_RESET_PEAK_RSS)
    except OSError:
        return False
    return True
