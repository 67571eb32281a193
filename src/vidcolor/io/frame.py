"""The unit that flows from the reader, through the engine loop, to the writer."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded picture, upright (rotation metadata already applied).

    ``rgb`` is HxWx3 ``uint8`` (8-bit sources) or ``uint16`` (deeper sources, full 16-bit
    scale). ``pts``/``time_base`` are the source's own timestamp, kept exactly so the writer
    can reuse it (variable frame rate included); both are None for still images.
    ``source`` is the decoder's frame (an ``av.VideoFrame``) when there is one: the writer
    copies its luma plane bit for bit.
    """

    index: int
    rgb: np.ndarray
    pts: int | None = None
    time_base: Fraction | None = None
    source: Any = None

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])
