"""Video and image input/output: decoding, encoding, stream copy, stills."""

from __future__ import annotations


def one_line_cause(exc: BaseException) -> str:
    """A short, single-line reason for a library error (FFmpeg's text without errno or path)."""
    text = getattr(exc, "strerror", None) or str(exc)
    lines = str(text).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
