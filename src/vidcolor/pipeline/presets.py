"""Presets: how a source picture becomes the engine's working-size Lab, and how the engine's ab
becomes the output picture.

- ``official`` reproduces the official test script (REFERENCE.md §2 and §7): cover-resize and
  centre-crop to the working size, bilinear x2 and x1.25 on ab, the fast global smoother, lab2rgb
  with uint8 truncation, output at the working size.
- ``default`` keeps the aspect ratio (fit and pad, crop back), brings the chroma up to the source
  resolution with the source luminance as guide and keeps the source's luminance, so the output
  has the source's size and bit depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from vidcolor.color import official
from vidcolor.color.depth import convert_depth, from_unit_tensor, to_unit_tensor
from vidcolor.color.lab import L_MEAN, L_RANGE, center_lab, lab_to_rgb, rgb_to_lab, rgb_to_lightness
from vidcolor.color.resize import (
    OFFICIAL_WORKING_SIZE,
    FitPadPlan,
    crop_content,
    fit_pad,
    fit_pad_image,
    plan_fit_pad,
)
from vidcolor.color.upsample import guided_coefficients, upsample_rows
from vidcolor.engines.base import Engine
from vidcolor.errors import OptionError
from vidcolor.options import PRESETS


def postprocess_chroma(engine: Engine, ab: torch.Tensor, l_work: torch.Tensor) -> torch.Tensor:
    """Engine ab -> working-size ab: bilinear up, then the release's post-processing when the
    engine's contract asks for it (``Engine.official_postprocess``)."""
    ab = ab.cpu()  # kept in the engine's dtype (float64 runs stay float64 up to the smoother)
    if tuple(ab.shape[-2:]) != tuple(l_work.shape[-2:]):
        ab = F.interpolate(ab, size=tuple(l_work.shape[-2:]), mode="bilinear", align_corners=False)
    if not engine.official_postprocess:
        return ab.float()
    return official.postprocess_ab(ab, l_work)


@dataclass
class OfficialPreset:
    """REFERENCE.md §2 pre-processing and §7 post-processing, output at the working size."""

    working: tuple[int, int]
    name: str = "official"

    def output_size(self, source_hw: tuple[int, int]) -> tuple[int, int]:
        return self.working

    def prepare(self, rgb: np.ndarray) -> tuple[torch.Tensor, None]:
        """Picture -> (1, 3, H, W) float32 centred Lab at the working size (exactly as official)."""
        cropped = official.cover_crop(convert_depth(rgb, np.uint8), self.working)
        return torch.as_tensor(official.official_lab(cropped))[None], None

    def prepare_reference(self, rgb: np.ndarray) -> torch.Tensor:
        return self.prepare(rgb)[0]

    def finish(self, engine: Engine, ab: torch.Tensor, lab_work: torch.Tensor, context: None,
               rgb: np.ndarray) -> np.ndarray:
        l_work = lab_work[:, :1].float().cpu()
        ab_work = postprocess_chroma(engine, ab, l_work)
        return official.official_to_rgb_uint8(l_work[0, 0], ab_work[0])


@dataclass
class DefaultPreset:
    """Aspect kept, source resolution and luminance kept, chroma upsampled along luma edges.

    Work at the source resolution runs in strips of rows, so memory follows the processing
    size, not the source's (a >4K frame never has a full-size float Lab image in memory).
    """

    plan: FitPadPlan
    name: str = "default"

    def output_size(self, source_hw: tuple[int, int]) -> tuple[int, int]:
        return source_hw

    def prepare(self, rgb: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Frame -> its centred L at the padded working size (1, 1, H, W) (frames need no ab),
        and the source-resolution centred L that ``finish`` keeps."""
        l_source = torch.empty((1, 1, rgb.shape[0], rgb.shape[1]), dtype=torch.float32)
        for r0, r1 in strips(rgb.shape[0]):
            l_source[..., r0:r1, :] = rgb_to_lightness(to_unit_tensor(rgb[r0:r1])) - L_MEAN
        return fit_pad(l_source, self.plan), l_source

    def prepare_reference(self, rgb: np.ndarray) -> torch.Tensor:
        """The reference is fitted whole into the working size (no colour is cropped away)."""
        return fit_pad_image(center_lab(rgb_to_lab(to_unit_tensor(rgb))), self.plan.working)

    def finish(self, engine: Engine, ab: torch.Tensor, lab_work: torch.Tensor,
               l_source: torch.Tensor, rgb: np.ndarray) -> np.ndarray:
        l_work = lab_work[:, :1].float().cpu()
        ab_work = postprocess_chroma(engine, ab, l_work)
        ab_content = crop_content(ab_work, self.plan)
        a, b = guided_coefficients(ab_content, (l_source + L_MEAN) / L_RANGE)
        same_size = a.shape[-2:] == l_source.shape[-2:]
        maps = torch.cat([a, b])
        out = np.empty(rgb.shape, rgb.dtype)
        for r0, r1 in strips(rgb.shape[0]):
            lightness = l_source[..., r0:r1, :] + L_MEAN
            if same_size:
                ab_rows = b[..., r0:r1, :]
            else:
                up = upsample_rows(maps, tuple(l_source.shape[-2:]), (r0, r1))
                ab_rows = up[:1] * (lightness / L_RANGE) + up[1:]
            lab = torch.cat([lightness, ab_rows], dim=1)
            out[r0:r1] = from_unit_tensor(lab_to_rgb(lab), rgb.dtype)
        return out


# Rows per strip for work at the source resolution: 256 rows of a 4K frame are ~4 MB per plane.
STRIP_ROWS = 256


def strips(height: int, rows: int = STRIP_ROWS):
    for start in range(0, height, rows):
        yield start, min(height, start + rows)


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'HxW' -> (H, W); None stays None. OptionError on anything else."""
    if text is None:
        return None
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise OptionError(f"--size must look like HEIGHTxWIDTH (e.g. 432x768), got {text!r}")
    return int(parts[0]), int(parts[1])


def check_size_usable(engine: Engine, size: tuple[int, int]) -> None:
    """A processing box smaller than the engine's smallest working size would only be padded
    up to it: an analysis of a few pixels. Refused, naming the minimum."""
    minimum = engine.valid_working_size(1, 1)  # the smallest size the engine runs at
    if size[0] < minimum[0] or size[1] < minimum[1]:
        raise OptionError(f"--size {size[0]}x{size[1]} is below what the {engine.name} engine can "
                          f"use; the minimum is {minimum[0]}x{minimum[1]}")


def check_size(name: str, engine: Engine, size: tuple[int, int] | None) -> None:
    """``--size`` against the engine, before any work (``make_preset`` checks it again)."""
    if size is None:
        return
    if name == "official":
        engine.check_working_size(*size)
    else:
        check_size_usable(engine, size)


def make_preset(name: str, engine: Engine, source_hw: tuple[int, int],
                size: tuple[int, int] | None):
    """Build the preset for a clip; the engine checks or rounds the working size."""
    if name == "official":
        working = size or OFFICIAL_WORKING_SIZE
        engine.check_working_size(*working)
        return OfficialPreset(working=working)
    if name == "default":
        if size is not None:
            check_size_usable(engine, size)
        plan = plan_fit_pad(source_hw, engine.valid_working_size, box=size)
        engine.check_working_size(*plan.working)
        return DefaultPreset(plan=plan)
    raise OptionError(f"--preset must be one of {', '.join(PRESETS)}, got {name!r}")
