"""A ground-truth colour clip made from photographs that scikit-image ships.

The classic engine's quality is measured (``bench/classic_quality.py``) and shown
(``python -m vidcolor.demo``) on this clip: its grayscale input is the L of the truth, so every
colorized frame can be scored against the real colours. It has what makes video colorization
hard: a camera that pans and zooms, an object moving on its own (occlusions), and a hard cut.

Imagery (scikit-image ``data`` module; licences as stated in its docstrings):

* ``coffee``: "Coffee cup", courtesy of Pikolo Espresso Bar, CC0 by the photographer
  (Rachel Michetti). The scene of both shots.
* ``chelsea``: "Chelsea the cat", CC0 by the photographer (Stefan van der Walt). The moving
  object: her head, cut out with a soft elliptical mask, crosses the first shot.

Clip layout for ``n`` frames: shot 1 (the first ``cut_at`` of the clip) pans across the coffee
scene while zooming in, with the cat moving the other way; then a hard cut to shot 2, a
close-up of another part of the same scene that pans sideways.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vidcolor.errors import OptionError, OutputError

DEFAULT_SIZE = (240, 320)  # (H, W): small enough for a demo that runs in seconds
DEFAULT_CUT_AT = 0.6  # fraction of the clip before the hard cut
DEFAULT_FPS = 24
AUDIO_SAMPLE_RATE = 48000
AUDIO_TONE_HZ = 440.0  # an A: audible proof that the audio track was kept
AUDIO_AMPLITUDE = 0.2
AUDIO_FRAME_SAMPLES = 1024  # AAC encodes 1024 samples per frame

# Camera paths in normalised source coordinates: (centre row, centre col) as fractions of the
# photo, and the zoom (1 = the largest view of the output's aspect that fits the photo).
SHOT1_CENTRE = ((0.55, 0.40), (0.45, 0.60))
SHOT1_ZOOM = (1.05, 1.35)
SHOT2_CENTRE = ((0.50, 0.62), (0.50, 0.45))
SHOT2_ZOOM = (2.0, 2.0)
# The cat's head: crop box in ``chelsea`` (rows, cols), its height as a fraction of the frame,
# and its path in output-frame coordinates (fractions), moving right to left.
CAT_BOX = ((30, 230), (100, 330))
CAT_HEIGHT = 0.38
CAT_PATH = ((0.58, 0.85), (0.48, 0.15))


@dataclass(frozen=True)
class DemoClipInfo:
    """Where the hard cut is: frames ``cut_index`` and later belong to shot 2."""

    n_frames: int
    cut_index: int


def cut_index(n_frames: int, cut_at: float = DEFAULT_CUT_AT) -> int:
    """Index of the first frame of shot 2."""
    return max(1, min(n_frames - 1, round(n_frames * cut_at))) if n_frames > 1 else n_frames


def _photo(name: str) -> torch.Tensor:
    from skimage import data

    rgb = getattr(data, name)()
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float()[None] / 255.0


def _view(photo: torch.Tensor, size: tuple[int, int], centre: tuple[float, float],
          zoom: float) -> torch.Tensor:
    """The camera's view: a window of the output's aspect around ``centre``, resampled."""
    _, _, src_h, src_w = photo.shape
    out_h, out_w = size
    # The largest window of the output's aspect that fits the photo, shrunk by the zoom.
    fit = min(src_h / out_h, src_w / out_w) / zoom
    win_h, win_w = out_h * fit, out_w * fit
    top = np.clip(centre[0] * src_h - win_h / 2, 0, src_h - win_h)
    left = np.clip(centre[1] * src_w - win_w / 2, 0, src_w - win_w)
    rows = top + (torch.arange(out_h, dtype=torch.float32) + 0.5) * fit - 0.5
    cols = left + (torch.arange(out_w, dtype=torch.float32) + 0.5) * fit - 0.5
    grid = torch.stack(torch.meshgrid(cols / (src_w - 1) * 2 - 1, rows / (src_h - 1) * 2 - 1,
                                      indexing="xy"), dim=-1)
    view = F.grid_sample(photo, grid[None], mode="bicubic", padding_mode="border",
                         align_corners=True)
    return view.clamp(0.0, 1.0)


def _cat_sprite(height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The cat's head resized to ``height`` rows, and its soft elliptical alpha mask."""
    (r0, r1), (c0, c1) = CAT_BOX
    head = _photo("chelsea")[:, :, r0:r1, c0:c1]
    width = max(2, round(height * (c1 - c0) / (r1 - r0)))
    head = F.interpolate(head, size=(height, width), mode="bilinear", antialias=True,
                         align_corners=False).clamp(0.0, 1.0)
    y = (torch.arange(height, dtype=torch.float32) + 0.5) / height * 2 - 1
    x = (torch.arange(width, dtype=torch.float32) + 0.5) / width * 2 - 1
    radius = torch.sqrt(y[:, None] ** 2 + x[None, :] ** 2)
    alpha = ((1.0 - radius) / 0.08).clamp(0.0, 1.0)  # 4 % feathered edge
    return head, alpha[None, None]


def _paste(frame: torch.Tensor, sprite: torch.Tensor, alpha: torch.Tensor,
           centre: tuple[float, float]) -> torch.Tensor:
    """Alpha-blend the sprite with its centre at ``centre`` (pixels), clipped to the frame."""
    _, _, height, width = frame.shape
    sh, sw = sprite.shape[-2:]
    top, left = round(centre[0] - sh / 2), round(centre[1] - sw / 2)
    fr0, fr1 = max(0, top), min(height, top + sh)
    fc0, fc1 = max(0, left), min(width, left + sw)
    if fr0 >= fr1 or fc0 >= fc1:
        return frame
    out = frame.clone()
    region = (slice(None), slice(None), slice(fr0, fr1), slice(fc0, fc1))
    sub = (slice(None), slice(None), slice(fr0 - top, fr1 - top), slice(fc0 - left, fc1 - left))
    out[region] = alpha[sub] * sprite[sub] + (1 - alpha[sub]) * frame[region]
    return out


def _interpolate(start, end, t: float):
    if isinstance(start, tuple):
        return tuple(s + (e - s) * t for s, e in zip(start, end))
    return start + (end - start) * t


def _check_clip_options(n_frames: int, size: tuple[int, int], even: bool = False) -> None:
    if n_frames < 1:
        raise OptionError(f"demo clip: n_frames must be >= 1, got {n_frames}")
    if len(size) != 2 or min(size) < 16:
        raise OptionError(f"demo clip: size must be (H, W) with sides >= 16, got {size}")
    if even and (size[0] % 2 or size[1] % 2):  # yuv420p halves the chroma planes
        raise OptionError(f"demo clip: a video needs even sides, got {size}")


def make_truth_frames(n_frames: int, size: tuple[int, int] = DEFAULT_SIZE, *,
                      cut_at: float = DEFAULT_CUT_AT) -> list[np.ndarray]:
    """The ground-truth colour frames, HxWx3 uint8 each (layout in the module docstring)."""
    _check_clip_options(n_frames, size)
    coffee = _photo("coffee")
    cat, alpha = _cat_sprite(max(8, round(size[0] * CAT_HEIGHT)))
    cut = cut_index(n_frames, cut_at)
    frames = []
    for index in range(n_frames):
        if index < cut:
            t = index / max(1, cut - 1)
            view = _view(coffee, size, _interpolate(*SHOT1_CENTRE, t), _interpolate(*SHOT1_ZOOM, t))
            cat_centre = _interpolate(*CAT_PATH, t)
            view = _paste(view, cat, alpha, (cat_centre[0] * size[0], cat_centre[1] * size[1]))
        else:
            t = (index - cut) / max(1, n_frames - cut - 1)
            view = _view(coffee, size, _interpolate(*SHOT2_CENTRE, t), _interpolate(*SHOT2_ZOOM, t))
        rgb = (view[0].permute(1, 2, 0) * 255.0 + 0.5).clamp(0, 255).to(torch.uint8)
        frames.append(rgb.numpy())
    return frames


def demo_reference(size: tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    """An exemplar from the same scene: the whole coffee photo, HxWx3 uint8, framed wider
    than any frame of the clip (so it is a reference, not a frame)."""
    view = _view(_photo("coffee"), size, (0.5, 0.5), 1.0)
    return (view[0].permute(1, 2, 0) * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).numpy()


def luminance_only(rgb: np.ndarray) -> np.ndarray:
    """The grayscale input for a truth frame: its CIELAB L with a = b = 0, back to sRGB uint8.

    scikit-image's conversions, the ones the official pipeline uses (REFERENCE.md §2).
    """
    from skimage.color import lab2rgb, rgb2lab

    lab = rgb2lab(rgb)
    lab[..., 1:] = 0.0
    return (np.clip(lab2rgb(lab), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_demo_clip(path, n_frames: int, size: tuple[int, int] = DEFAULT_SIZE,
                    with_audio: bool = True, *, grayscale: bool = True,
                    fps: int = DEFAULT_FPS, cut_at: float = DEFAULT_CUT_AT) -> DemoClipInfo:
    """Write the clip as H.264 (yuv420p) mp4, with an AAC sine tone track when ``with_audio``.

    ``grayscale=True`` writes the colorization input (the L of the truth); False the truth.
    """
    import av

    _check_clip_options(n_frames, size, even=True)
    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"{path}: the folder {path.parent} does not exist")
    frames = make_truth_frames(n_frames, size, cut_at=cut_at)
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = size[1], size[0]
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "12", "preset": "veryfast"}  # near-lossless: a truth to score
        audio = None
        if with_audio:
            audio = container.add_stream("aac", rate=AUDIO_SAMPLE_RATE)
            audio.layout = "mono"
        for rgb in frames:
            picture = luminance_only(rgb) if grayscale else rgb
            for packet in video.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio is not None:
            _write_tone(container, audio, seconds=n_frames / fps)
    return DemoClipInfo(n_frames=n_frames, cut_index=cut_index(n_frames, cut_at))


def _write_tone(container, stream, seconds: float) -> None:
    import av

    total = int(round(seconds * AUDIO_SAMPLE_RATE))
    time = np.arange(total, dtype=np.float64) / AUDIO_SAMPLE_RATE
    tone = (AUDIO_AMPLITUDE * np.sin(2 * np.pi * AUDIO_TONE_HZ * time)).astype(np.float32)
    for start in range(0, total, AUDIO_FRAME_SAMPLES):
        chunk = tone[start:start + AUDIO_FRAME_SAMPLES]
        frame = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = start
        frame.time_base = Fraction(1, AUDIO_SAMPLE_RATE)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
