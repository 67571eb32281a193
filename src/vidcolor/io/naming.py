"""File names: which files count as videos, and the default output name of an input."""

from __future__ import annotations

from pathlib import Path

# Files taken as videos by their name (batch folders; a reference that is one is refused).
VIDEO_EXTENSIONS = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv"}


def default_output(src: Path, kind: str) -> Path:
    """``old.mp4`` -> ``old.color.mp4``; a frame folder -> ``frames_color/``; image -> PNG."""
    if kind == "folder":
        return src.with_name(src.name + "_color")  # a dot would read as a file extension
    if kind == "image":
        return src.with_name(f"{src.stem}.color.png")
    return src.with_name(f"{src.stem}.color{src.suffix}")
