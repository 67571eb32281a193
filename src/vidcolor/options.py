"""The enumerated choices of the API and the command line, in one place.

Torch-free on purpose: the CLI types its options with them (``--help`` lists the choices and
shell completion offers them) without loading torch, and the library checks its arguments
against the same tuples.
"""

from __future__ import annotations

from enum import Enum

ENGINES = ("auto", "devc", "classic")
MODES = ("exemplar", "propagate")
PRESETS = ("default", "official")
# "cuda:N" is accepted too (a GPU by index), so --device stays a string with these completions.
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "float32", "float64", "bfloat16", "float16")
# Video encoders, then "png": a folder of PNG frames (io/writer.py maps them to FFmpeg's).
CODECS = ("h264", "h265", "ffv1", "png")


def choice_enum(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A str-valued Enum of ``values`` (members named like their values), for typed options."""
    return Enum(name, {value: value for value in values}, type=str)
