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
from vidcolor.color.lab import (
    L_MEAN,
    L_RANGE,
    center_lab,
    lab_to_rgb,
    rgb_to_lab,
    rgb_to_lightness,
)
from vidcolor.color.resize import (
    OFFICIAL_WORKING_SIZE,
    FitPadPlan,
    crop_content,
    fit_pad,
    fit_pad_image,
    plan_fit_pad,
)
from vidcolor.color.smooth import OFFICIAL_FGS_LAMBDA, OFFICIAL_FGS_SIGMA, fgs_filter
from vidcolor.color.upsample import guided_coefficients, upsample_rows
from vidcolor.engines.base import Engine
from vidcolor.errors import OptionError

PRESETS = ("default", "official")

# Official post-processing constants (REFERENCE.md §7, test.py:31-33 and :99-117).
OFFICIAL_CHROMA_GAIN = 1.25  # "ab * 1.25" after the x2 upsample: a saturation boost


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Bring a 16-bit picture to 8 bits (rounding), leave 8-bit untouched."""
    if rgb.dtype == np.uint8:
        return rgb
    return np.round(rgb.astype(np.float64) * (255.0 / 65535.0)).astype(np.uint8)


def rgb_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8/uint16 -> (1, 3, H, W) float32 in [0, 1]."""
    scale = 255.0 if rgb.dtype == np.uint8 else 65535.0
    if not (rgb.flags.writeable and rgb.flags.c_contiguous):  # decoder buffers, rot90 views
        rgb = rgb.copy()
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / scale


def tensor_to_rgb(rgb: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """(1, 3, H, W) in [0, 1] -> HxWx3 of ``dtype`` (uint8 or uint16), rounded."""
    scale = 255.0 if dtype == np.uint8 else 65535.0
    out = (rgb[0].clamp(0, 1) * scale).round().permute(1, 2, 0)
    return out.cpu().numpy().astype(dtype)


def postprocess_chroma(engine: Engine, ab: torch.Tensor, l_work: torch.Tensor, gain: float
                       ) -> torch.Tensor:
    """Engine ab -> working-size ab: bilinear up, gain, then the official smoother for devc.

    The classic engine already propagates its colours edge-aware, so it gets neither the gain
    nor a second smoothing.
    """
    ab = ab.cpu()  # kept in the engine's dtype (float64 runs stay float64 up to the smoother)
    if tuple(ab.shape[-2:]) != tuple(l_work.shape[-2:]):
        ab = F.interpolate(ab, size=tuple(l_work.shape[-2:]), mode="bilinear", align_corners=False)
    if not getattr(engine, "official_postprocess", False):
        return ab.float()
    ab = ab * gain
    guide = official.fgs_guide(l_work[0, 0])
    # The official smoother is OpenCV's, which only takes float32 (REFERENCE.md §7).
    smoothed = fgs_filter(ab[0].float().numpy(), guide, lam=OFFICIAL_FGS_LAMBDA,
                          sigma=OFFICIAL_FGS_SIGMA)
    return torch.as_tensor(np.asarray(smoothed), dtype=torch.float32)[None]


@dataclass
class OfficialPreset:
    """REFERENCE.md §2 pre-processing and §7 post-processing, output at the working size."""

    working: tuple[int, int]
    name: str = "official"

    def output_size(self, source_hw: tuple[int, int]) -> tuple[int, int]:
        return self.working

    def prepare(self, rgb: np.ndarray) -> tuple[torch.Tensor, None]:
        """Picture -> (1, 3, H, W) float32 centred Lab at the working size (exactly as official)."""
        cropped = official.cover_crop(to_uint8(rgb), self.working)
        return torch.as_tensor(official.official_lab(cropped))[None], None

    def prepare_reference(self, rgb: np.ndarray) -> torch.Tensor:
        return self.prepare(rgb)[0]

    def finish(self, engine: Engine, ab: torch.Tensor, lab_work: torch.Tensor, context: None,
               rgb: np.ndarray) -> np.ndarray:
        l_work = lab_work[:, :1].float().cpu()
        ab_work = postprocess_chroma(engine, ab, l_work, OFFICIAL_CHROMA_GAIN)
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
            l_source[..., r0:r1, :] = rgb_to_lightness(rgb_tensor(rgb[r0:r1])) - L_MEAN
        return fit_pad(l_source, self.plan), l_source

    def prepare_reference(self, rgb: np.ndarray) -> torch.Tensor:
        """The reference is fitted whole into the working size (no colour is cropped away)."""
        return fit_pad_image(center_lab(rgb_to_lab(rgb_tensor(rgb))), self.plan.working)

    def finish(self, engine: Engine, ab: torch.Tensor, lab_work: torch.Tensor,
               l_source: torch.Tensor, rgb: np.ndarray) -> np.ndarray:
        l_work = lab_work[:, :1].float().cpu()
        ab_work = postprocess_chroma(engine, ab, l_work, OFFICIAL_CHROMA_GAIN)
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
            out[r0:r1] = tensor_to_rgb(lab_to_rgb(lab), rgb.dtype)
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


def make_preset(name: str, engine: Engine, source_hw: tuple[int, int],
                size: tuple[int, int] | None):
    """Build the preset for a clip; the engine checks or rounds the working size."""
    if name == "official":
        working = size or OFFICIAL_WORKING_SIZE
        engine.check_working_size(*working)
        return OfficialPreset(working=working)
    if name == "default":
        plan = plan_fit_pad(source_hw, engine.valid_working_size, box=size)
        engine.check_working_size(*plan.working)
        return DefaultPreset(plan=plan)
    raise OptionError(f"--preset must be one of {', '.join(PRESETS)}, got {name!r}")
