"""Processing-size plans for the ``default`` preset: keep the aspect ratio, never crop.

The picture is scaled to a working box (about the official working area by default), then
padded by reflection up to the nearest size the engine accepts; the padding is cropped off the
result. The ``official`` preset's cover-resize-and-crop lives in ``color/official.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

# The official working size (REFERENCE.md §1: opt.image_size = 432 x 768). The default preset
# works at about the same number of pixels whatever the source's aspect ratio.
OFFICIAL_WORKING_SIZE = (432, 768)
DEFAULT_WORKING_AREA = OFFICIAL_WORKING_SIZE[0] * OFFICIAL_WORKING_SIZE[1]


@dataclass(frozen=True)
class FitPadPlan:
    """Source (h, w) -> content (h, w) inside a padded working (h, w)."""

    source: tuple[int, int]
    content: tuple[int, int]
    working: tuple[int, int]

    @property
    def padding(self) -> tuple[int, int]:
        """Rows and columns of padding added at the bottom and right."""
        return self.working[0] - self.content[0], self.working[1] - self.content[1]


def plan_fit_pad(
    source_hw: tuple[int, int],
    valid_size: Callable[[int, int], tuple[int, int]],
    box: tuple[int, int] | None = None,
    area: int = DEFAULT_WORKING_AREA,
) -> FitPadPlan:
    """Choose the content size (aspect kept) and the padded working size.

    ``box``: fit the content inside this (h, w); otherwise scale to about ``area`` pixels,
    never up (a small source is processed at its own size). ``valid_size`` is the engine's
    ``valid_working_size``: the smallest size >= (h, w) it can run at.
    """
    h, w = source_hw
    if h < 1 or w < 1:
        raise ValueError(f"source size must be positive, got {h}x{w}")
    if box is not None:
        scale = min(box[0] / h, box[1] / w)
    else:
        scale = min(1.0, math.sqrt(area / (h * w)))
    content = (max(1, round(h * scale)), max(1, round(w * scale)))
    working = valid_size(*content)
    if working[0] < content[0] or working[1] < content[1]:
        raise ValueError(f"valid_size returned {working}, smaller than {content}")
    return FitPadPlan(source=(h, w), content=content, working=working)


def resize_area(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (B, C, H, W): antialiased bilinear down, bilinear up; identity when equal."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    down = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=down)


def pad_to(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pad (B, C, h, w) at the bottom/right to ``size`` by reflection (edge copy when too small).

    Reflection keeps real image statistics in the padding, so the correspondence does not
    match frame content against an artificial border.
    """
    ph, pw = size[0] - image.shape[-2], size[1] - image.shape[-1]
    if ph == 0 and pw == 0:
        return image
    if ph < image.shape[-2] and pw < image.shape[-1]:
        return F.pad(image, (0, pw, 0, ph), mode="reflect")
    return F.pad(image, (0, pw, 0, ph), mode="replicate")


def fit_pad(image: torch.Tensor, plan: FitPadPlan) -> torch.Tensor:
    """Source-size (B, C, H, W) -> working-size tensor following ``plan``."""
    return pad_to(resize_area(image, plan.content), plan.working)


def fit_pad_image(image: torch.Tensor, working: tuple[int, int]) -> torch.Tensor:
    """Fit any image (e.g. the reference) inside ``working`` keeping its aspect, then pad."""
    h, w = image.shape[-2:]
    scale = min(working[0] / h, working[1] / w)
    content = (max(1, min(working[0], round(h * scale))), max(1, min(working[1], round(w * scale))))
    return pad_to(resize_area(image, content), working)


def crop_content(image: torch.Tensor, plan: FitPadPlan, scale: float = 1.0) -> torch.Tensor:
    """Cut the padding off a result computed at ``scale`` times the working size."""
    h = round(plan.content[0] * scale)
    w = round(plan.content[1] * scale)
    return image[..., :h, :w]
