"""The devc engine: the paper's three networks behind the ``Engine`` protocol.

Sizes: the loop hands us Lab at the *working size* (official ``image_size``, e.g. 432x768);
every network runs at half of it (the official bilinear 0.5, an exact 2x2 mean), and ``step``
returns ab at that half size (REFERENCE.md §2.6, §6). The reference side (VGG, the correspondence
branches, phi, pooled colours) is computed once in ``prepare_reference``; the frame side runs
batched in ``correspond``; only ColorVidNet is sequential (``step``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F

from vidcolor.color.lab import uncenter_lab
from vidcolor.color.official import official_lab_to_rgb
from vidcolor.engines.base import Correspondence
from vidcolor.engines.scene_match import LOW_SCENE_MATCH, SceneKeys, describe, scene_match
from vidcolor.errors import OptionError, WeightsError
from vidcolor.engines.devc.correspondence import INFERENCE_TEMPERATURE, ReferenceEmbedding, warp
from vidcolor.engines.devc.network import build_colorization, build_correspondence, build_vgg19
from vidcolor.engines.devc.vgg19 import caffe_preprocess, gray_to_rgb, normalize_features
from vidcolor.weights.convert import check_converted

NETWORK_SCALE = 0.5  # networks run at half the working size (test.py:58,71)
# Working-size rules (REFERENCE.md §4): the network height must be 16k or 16k+8 and its width a
# multiple of 16 (WarpNet's concatenation), relu5_2 needs 2 rows and columns for its reflection
# pad (network >= 32), and ColorVidNet needs multiples of 8. At working size (x2):
WORKING_HEIGHT_MULTIPLE = 16
WORKING_WIDTH_MULTIPLE = 32
MIN_WORKING_SIDE = 64
SUPPORTED_DTYPES = (torch.float32, torch.float64)
SUPPORTED_AUTOCAST = (torch.bfloat16, torch.float16)
# CPU bfloat16: the networks that run faster in channels_last (all three: 1.15-1.24x over bf16
# NCHW on AVX512-BF16, 1.6-2.7x on AMX, at the official network size, bench/precision.py --layouts).
CPU_HALF_CHANNELS_LAST = ("vgg", "correspondence", "colorization")


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def valid_working_size(height: int, width: int) -> tuple[int, int]:
    """The smallest working size >= (height, width) the devc networks accept."""
    return (max(MIN_WORKING_SIDE, _round_up(height, WORKING_HEIGHT_MULTIPLE)),
            max(MIN_WORKING_SIDE, _round_up(width, WORKING_WIDTH_MULTIPLE)))


def check_working_size(height: int, width: int) -> None:
    """Raise OptionError naming the rule and the nearest valid size."""
    if (height, width) != valid_working_size(height, width):
        good_h, good_w = valid_working_size(height, width)
        raise OptionError(
            f"size {height}x{width} is not supported by the devc engine: the height must be a "
            f"multiple of {WORKING_HEIGHT_MULTIPLE} and the width a multiple of {WORKING_WIDTH_MULTIPLE}, "
            f"both at least {MIN_WORKING_SIDE} (nearest valid size: {good_h}x{good_w}; official 432x768)"
        )


def to_network_size(x: torch.Tensor) -> torch.Tensor:
    """The official bilinear x0.5 (align_corners=False), i.e. an exact 2x2 mean."""
    return F.interpolate(x, scale_factor=NETWORK_SCALE, mode="bilinear")


@dataclass(frozen=True)
class DevcReference:
    """A prepared reference: its correspondence embedding and its Lab at network size."""

    embedding: ReferenceEmbedding
    lab_half: torch.Tensor  # (1, 3, h/2, w/2), centred L; also the first state in propagation
    working_size: tuple[int, int]
    scene: SceneKeys  # its luminance keypoints, for ``reference_match``


class DevcEngine:
    """The paper's network, frozen, in inference mode, on one device and precision.

    ``weights``: converted tensors per checkpoint kind (``weights.convert.load_converted`` or
    the tests' ``seeded_weights.seeded_converted``); they are cast to ``dtype`` (float64 computes with the
    checkpoint's float32 values exactly). ``autocast_dtype`` (bfloat16 / float16) runs the
    networks in half precision: on CUDA under autocast, on a CPU (bfloat16 only) with the
    networks' weights and activations in bfloat16 so oneDNN's native bf16 kernels run without
    per-call casts. Either way the correlation, its argmax/softmax, the instance-norm
    statistics and ColorVidNet's output head stay in float32.
    """

    name = "devc"
    # The official x1.25 gain and fast global smoother belong to this engine's output
    # (REFERENCE.md §7).
    official_postprocess = True
    # No poor-match warning: the network's similarity has not been calibrated against known
    # good and bad references.
    low_confidence = None
    # The keypoint scene match below which a shot's best reference is a poor match.
    low_match = LOW_SCENE_MATCH

    def __init__(self, weights: Mapping[str, Mapping[str, torch.Tensor]], device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, temperature: float = INFERENCE_TEMPERATURE,
                 autocast_dtype: torch.dtype | None = None):
        if dtype not in SUPPORTED_DTYPES:
            raise OptionError(f"devc engine: precision {dtype} is not supported; use float32 or float64 "
                              f"(bfloat16/float16 are autocast options)")
        if autocast_dtype is not None and autocast_dtype not in SUPPORTED_AUTOCAST:
            raise OptionError(f"devc engine: autocast dtype {autocast_dtype} is not supported; "
                              f"use bfloat16 or float16")
        if autocast_dtype is not None and dtype != torch.float32:
            raise OptionError("devc engine: autocast needs float32 parameters, not " + str(dtype))
        if not temperature > 0:
            raise OptionError(f"devc engine: temperature must be positive, got {temperature}")
        if autocast_dtype == torch.float16 and torch.device(device).type == "cpu":
            raise OptionError("devc engine: float16 needs a CUDA GPU; on a CPU use bfloat16 or float32")
        self.device = torch.device(device)
        self.dtype = dtype
        self.temperature = float(temperature)
        self.autocast_dtype = autocast_dtype
        self.vgg = self._load(build_vgg19, weights, "vgg19_conv")
        self.correspondence = self._load(build_correspondence, weights, "nonlocal_net")
        self.colorization = self._load(build_colorization, weights, "colornet")
        # CPU half precision: the networks hold bf16 weights and compute in bf16 end to end.
        self.network_dtype = autocast_dtype if self._cpu_half else dtype
        if self._cpu_half:
            self._cast_networks(autocast_dtype)
        self._choose_memory_format()

    @property
    def _cpu_half(self) -> bool:
        return self.autocast_dtype is not None and self.device.type == "cpu"

    def _cast_networks(self, dtype: torch.dtype) -> None:
        """Networks to ``dtype``, except ColorVidNet's 1x1 output head (float32: ab precision)."""
        self.vgg.to(dtype)
        self.correspondence.to(dtype)
        for name, child in self.colorization.named_children():
            if name != "head":
                child.to(dtype)

    @classmethod
    def from_directory(cls, path: str | Path, device: str | torch.device = "cpu",
                       dtype: torch.dtype = torch.float32, **options) -> "DevcEngine":
        """Load the converted safetensors of ``path`` (strictly checked)."""
        from vidcolor.weights.convert import load_converted

        return cls(load_converted(path), device, dtype, **options)

    def _load(self, builder, weights: Mapping[str, Mapping[str, torch.Tensor]], kind: str) -> torch.nn.Module:
        if kind not in weights:
            raise WeightsError(f"devc engine: no weights for checkpoint {kind!r}")
        try:
            check_converted(kind, weights[kind])
        except WeightsError as error:
            raise WeightsError(f"devc engine: {error}") from None
        with torch.device("meta"):  # no random init of parameters about to be replaced
            module = builder()
        # Cast first (float64 computes with the checkpoint's float32 values exactly), then adopt
        # the tensors as the parameters. Same dtype and device: shared with ``weights``, no copy.
        tensors = {name: value.to(device=self.device, dtype=self.dtype) for name, value in weights[kind].items()}
        try:
            module.load_state_dict(tensors, strict=True, assign=True)
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()[0]
            raise WeightsError(f"devc engine: weights for {kind} do not fit the network ({first_line})") from None
        module.eval().requires_grad_(False)
        return module

    def _choose_memory_format(self) -> None:
        """channels_last where it was measured or is standard practice; same results either way.

        CPU float32: only ColorVidNet's full-resolution stage (oneDNN skips the reorders of its
        large outputs, ~10% of that stage at 432x768); elsewhere NCHW measured as fast, and
        instance norm is slower in channels_last. CUDA: every module (cuDNN's NHWC kernels).
        """
        if self.device.type == "cuda":
            for module in (self.vgg, self.correspondence, self.colorization):
                module.to(memory_format=torch.channels_last)
        elif self._cpu_half:
            for name in CPU_HALF_CHANNELS_LAST:
                getattr(self, name).to(memory_format=torch.channels_last)
        elif self.device.type == "cpu" and self.dtype == torch.float32:
            self.colorization.dec10.channels_last = True

    def _channels_last(self, module: str) -> bool:
        return self.device.type == "cuda" or (self._cpu_half and module in CPU_HALF_CHANNELS_LAST)

    def _network_input(self, x: torch.Tensor, module: str) -> torch.Tensor:
        """``x`` in the network's dtype and, where that module runs channels_last, layout."""
        x = x.to(self.network_dtype)
        return x.contiguous(memory_format=torch.channels_last) if self._channels_last(module) else x

    # --- sizes -----------------------------------------------------------------------------
    def check_working_size(self, height: int, width: int) -> None:
        check_working_size(height, width)

    def valid_working_size(self, height: int, width: int) -> tuple[int, int]:
        return valid_working_size(height, width)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return height // 2, width // 2

    # --- helpers ---------------------------------------------------------------------------
    def _autocast(self):
        if self.autocast_dtype is None or self._cpu_half:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _input(self, x: torch.Tensor, channels: int, what: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"devc engine: {what} must be (B, {channels}, H, W), got {shape}")
        check_working_size(int(x.shape[-2]), int(x.shape[-1]))
        return x.to(device=self.device, dtype=self.dtype)

    def _features(self, caffe_input: torch.Tensor) -> list[torch.Tensor]:
        with self._autocast():
            features = self.vgg(self._network_input(caffe_input, "vgg"))
        return [normalize_features(f.to(self.dtype)) for f in features]

    def _warpnet_input(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self._network_input(f, "correspondence") for f in features]

    # --- Engine protocol -------------------------------------------------------------------
    @torch.inference_mode()
    def prepare_reference(self, ref_lab: torch.Tensor) -> DevcReference:
        """Reference side, once: (1, 3, h, w) centred Lab at working size."""
        ref_lab = self._input(ref_lab, 3, "the reference Lab")
        if ref_lab.shape[0] != 1:
            raise ValueError(f"devc engine: one reference at a time, got batch {ref_lab.shape[0]}")
        lab_half = to_network_size(ref_lab)
        # The reference reaches VGG through the release's own Lab->RGB (REFERENCE.md §3).
        features = self._features(caffe_preprocess(official_lab_to_rgb(uncenter_lab(lab_half))))
        with self._autocast():
            embedding = self.correspondence.embed_reference(self._warpnet_input(features), lab_half)
        return DevcReference(embedding, lab_half, (int(ref_lab.shape[-2]), int(ref_lab.shape[-1])),
                             describe(ref_lab[:, :1]))

    @torch.inference_mode()
    def correspond(self, frames_l: torch.Tensor, ref: DevcReference) -> Correspondence:
        """Frame side, batched: (B, 1, h, w) centred L at working size -> warp + confidence."""
        frames_l = self._input(frames_l, 1, "frames_l")
        if tuple(frames_l.shape[-2:]) != ref.working_size:
            raise ValueError(f"devc engine: frames are {tuple(frames_l.shape[-2:])}, the reference was "
                             f"prepared at {ref.working_size}")
        l_half = to_network_size(frames_l)
        features = self._features(caffe_preprocess(gray_to_rgb(l_half)))
        with self._autocast():
            theta = self.correspondence.embed_frames(self._warpnet_input(features))
        warped, similarity = warp(theta, ref.embedding, self.temperature)
        return Correspondence(warped[:, 1:3].to(self.dtype), similarity.to(self.dtype), {"l_half": l_half})

    def reference_match(self, frames_l: torch.Tensor, ref: DevcReference) -> float:
        """The shared keypoint scene match (``engines/scene_match.py``), on the luminance the
        network sees: its own confidence has no calibration without the real weights, and the
        keypoint score's scale is the same for every engine (measured in
        bench/reference_matching.py)."""
        return scene_match(self._input(frames_l, 1, "frames_l"), ref.scene)

    @torch.inference_mode()
    def initial_state(self, ref: DevcReference, propagate: bool) -> torch.Tensor:
        """Zeros (exemplar mode: mid-gray, no colour) or the reference's own Lab (propagation)."""
        return ref.lab_half.clone() if propagate else torch.zeros_like(ref.lab_half)

    @torch.inference_mode()
    def step(self, frame_l: torch.Tensor, corr: Correspondence, state: torch.Tensor,
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """ColorVidNet on [L, warped ab, similarity, previous Lab] -> (ab (1, 2, h/2, w/2), state)."""
        l_half = corr.extra.get("l_half")
        if l_half is None:
            l_half = to_network_size(self._input(frame_l, 1, "frame_l"))
        if len(corr) != 1 or l_half.shape[0] != 1:
            raise ValueError(f"devc engine: step colorizes one frame, got a batch of {len(corr)}")
        if state.shape != (1, 3, *l_half.shape[-2:]):
            raise ValueError(f"devc engine: state must be (1, 3, {l_half.shape[-2]}, {l_half.shape[-1]}), "
                             f"got {tuple(state.shape)}")
        x = torch.cat((l_half, corr.warped_ab, corr.confidence, state.to(l_half)), dim=1)
        with self._autocast():
            ab = self.colorization(self._network_input(x, "colorization"))
        ab = ab.to(self.dtype)
        # The next frame sees this frame's L and its raw ab, before any post-processing (§6).
        return ab, torch.cat((l_half, ab), dim=1)
