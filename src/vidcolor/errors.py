"""Errors the user sees.

Every failure a user can cause or meet is a ``VidcolorError`` whose message is one line naming
the file and the cause. The CLI prints ``str(error)`` and exits with ``error.exit_code``:
2 for bad input or options (the user can fix the call), 1 for failures during processing.
"""

from __future__ import annotations


class VidcolorError(Exception):
    """Base class: a failure with a one-line, user-facing message."""

    exit_code = 1


class UsageError(VidcolorError):
    """Bad input, reference, output path or option: the call itself must change."""

    exit_code = 2


class InputError(UsageError):
    """The input video, frame folder or image cannot be used."""


class RefImageError(UsageError):
    """The reference image cannot be used."""


class OutputError(UsageError):
    """The output path cannot be written (exists, same as input, not writable, wrong container)."""


class OptionError(UsageError):
    """An option value is invalid (size, device, precision...)."""


class WeightsMissingError(UsageError):
    """The devc engine was asked for but its weights are not installed."""


class WeightsError(VidcolorError):
    """Installed or downloaded weights are corrupt, truncated or of the wrong layout."""


class DownloadError(VidcolorError):
    """A weight download failed (offline, HTTP error, dropped connection)."""


class ProcessingError(VidcolorError):
    """Decoding, the model or encoding failed part-way through a run."""


class Interrupted(VidcolorError):
    """The run was stopped by SIGINT (exit 130) or SIGTERM (exit 143)."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


# Advice for every out-of-memory failure: both options shrink what one step holds.
OUT_OF_MEMORY_ADVICE = "try a smaller --batch-size or --size"


def is_out_of_memory(error: BaseException) -> bool:
    """MemoryError, torch's CUDA/MPS ``OutOfMemoryError``, or a backend's "out of memory" text."""
    return (isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError"
            or "out of memory" in str(error).lower())


def unexpected_failure(subject: object, error: BaseException) -> ProcessingError:
    """A failure no check of ours foresaw (OSError, MemoryError, CUDA out of memory, a library's
    RuntimeError) as one line naming the file and the cause; the CLI exits 1 with it."""
    if is_out_of_memory(error):
        text = str(error).lower()
        where = "GPU " if "cuda" in text or "gpu" in text or "mps" in text else ""
        return ProcessingError(f"{subject}: out of {where}memory; {OUT_OF_MEMORY_ADVICE}")
    if isinstance(error, OSError) and error.strerror:
        where = f" ({error.filename})" if error.filename and str(error.filename) != str(subject) else ""
        return ProcessingError(f"{subject}: {error.strerror}{where}")
    lines = str(error).strip().splitlines()
    cause = lines[0] if lines else "no message"
    return ProcessingError(f"{subject}: {type(error).__name__}: {cause}")
