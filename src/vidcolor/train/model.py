"""The devc networks wired for training: two consecutive frames colorized recurrently.

The modules are the inference ones (``engines.devc``); what differs is how they are driven:
networks at the crop size directly (the official train.py runs at 216x384, no halving), the
warp is the dense softmax at the training temperature T = 0.01 with gradients (REFERENCE.md §4;
the inference argmax has none), one reference per sample, and the frame's VGG pass and the
reference's are frozen. Frame t-1 is colorized from a zero "previous frame" (the official
placeholder), frame t from frame t-1's prediction (train.py:400-428).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from vidcolor.color.lab import uncenter_lab
from vidcolor.color.official import official_lab_to_rgb
from vidcolor.engines.devc.correspondence import (
    TRAINING_TEMPERATURE,
    UPSAMPLE_TO_NETWORK,
    dense_warp,
)
from vidcolor.engines.devc.network import build_colorization, build_correspondence, build_vgg19
from vidcolor.engines.devc.vgg19 import caffe_preprocess, gray_to_rgb, normalize_features

VGG_LAYERS = ("relu2_2", "relu3_2", "relu4_2", "relu5_2")  # what VGG19Features returns, in order
# "Deliberately cripple the color matching" (paper §4) when the reference is the frame's own
# truth: Gaussian noise on its normalised VGG features, of this std relative to the features'
# per-element RMS (1/sqrt(C) after normalisation). Ours: the paper gives no value.
FEATURE_NOISE_RELATIVE_STD = 0.5


class GeneratorOutput(NamedTuple):
    """ab of frames t-1 and t (B, 2, H, W) and the reference's raw VGG features by layer."""

    ab_previous: torch.Tensor
    ab_current: torch.Tensor
    reference_features: dict[str, torch.Tensor]


def vgg_features(vgg: nn.Module, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
    """Raw (un-normalised) VGG19 maps of RGB in [0, 1], by layer name."""
    return dict(zip(VGG_LAYERS, vgg(caffe_preprocess(rgb))))


def lab_to_vgg_rgb(lab_centred: torch.Tensor) -> torch.Tensor:
    """Centred Lab -> the RGB the official code feeds VGG (its own tensor_lab2rgb, clamped)."""
    return official_lab_to_rgb(uncenter_lab(lab_centred))


def _feature_noise(features: list[torch.Tensor], seeds: torch.Tensor, enabled: torch.Tensor) -> list[torch.Tensor]:
    """Per-sample Gaussian noise on normalised features, drawn from a generator seeded per sample."""
    noisy = []
    for level, feature in enumerate(features):
        noise = torch.zeros_like(feature)
        for i in range(feature.shape[0]):
            if enabled[i]:
                generator = torch.Generator().manual_seed(int(seeds[i]) + level)
                draw = torch.randn(feature.shape[1:], generator=generator, dtype=torch.float32)
                noise[i] = draw.to(feature) * (FEATURE_NOISE_RELATIVE_STD / feature.shape[1] ** 0.5)
        noisy.append(feature + noise)
    return noisy


class Generator(nn.Module):
    """VGG19 (frozen) + correspondence + colorization subnets; ``forward`` runs one training sample batch."""

    def __init__(self, temperature: float = TRAINING_TEMPERATURE):
        super().__init__()
        self.vgg = build_vgg19().requires_grad_(False)
        self.correspondence = build_correspondence()
        self.colorization = build_colorization()
        self.temperature = temperature

    def load_subnets(self, weights: Mapping[str, Mapping[str, torch.Tensor]], *, vgg_only: bool) -> None:
        """Converted tensors (``weights.convert.load_converted``) into the modules, strictly."""
        self.vgg.load_state_dict(weights["vgg19_conv"], strict=True)
        if not vgg_only:
            self.correspondence.load_state_dict(weights["nonlocal_net"], strict=True)
            self.colorization.load_state_dict(weights["colornet"], strict=True)

    def train(self, mode: bool = True) -> "Generator":
        super().train(mode)
        self.vgg.eval()  # frozen: no state either way, but say so
        return self

    def forward(self, input_l: torch.Tensor, reference_lab: torch.Tensor, noise_seeds: torch.Tensor,
                feature_noise: torch.Tensor) -> GeneratorOutput:
        """input_l (B, 2, H, W): centred L of frames t-1, t (with luminance noise);
        reference_lab (B, 3, H, W) centred; feature_noise (B,) bool; noise_seeds (B,) int64."""
        batch = input_l.shape[0]
        with torch.no_grad():
            ref_raw = vgg_features(self.vgg, lab_to_vgg_rgb(reference_lab))
            ref_normalised = _feature_noise([normalize_features(f) for f in ref_raw.values()], noise_seeds,
                                            feature_noise)
            frames_l = torch.cat((input_l[:, :1], input_l[:, 1:]), dim=0)  # (2B, 1, H, W): t-1 then t
            frame_features = [normalize_features(f) for f in self.vgg(caffe_preprocess(gray_to_rgb(frames_l)))]
        theta = self.correspondence.embed_frames(frame_features)  # (2B, C, N)
        warped, similarity = [], []
        for i in range(batch):
            embedding = self.correspondence.embed_reference([f[i : i + 1] for f in ref_normalised],
                                                            reference_lab[i : i + 1])
            lab, sim = dense_warp(theta[[i, batch + i]], embedding, self.temperature)  # (2, 3, N), (2, N)
            warped.append(lab.reshape(2, 3, *embedding.grid))
            similarity.append(sim.reshape(2, 1, *embedding.grid))
        warped = _upsample(torch.stack(warped, dim=1))
        similarity = _upsample(torch.stack(similarity, dim=1))
        l_previous, l_current = input_l[:, :1], input_l[:, 1:]
        placeholder = torch.zeros_like(reference_lab)  # train.py: the zero "previous frame"
        ab_previous = self.colorization(torch.cat((l_previous, warped[0, :, 1:], similarity[0], placeholder), 1))
        state = torch.cat((l_previous, ab_previous), dim=1)
        ab_current = self.colorization(torch.cat((l_current, warped[1, :, 1:], similarity[1], state), 1))
        return GeneratorOutput(ab_previous, ab_current, ref_raw)


def _upsample(x: torch.Tensor) -> torch.Tensor:
    """(2, B, C, h, w) on the feature grid -> (2, B, C, 4h, 4w), nearest (REFERENCE.md §4)."""
    frames, batch = x.shape[:2]
    up = F.interpolate(x.flatten(0, 1), scale_factor=UPSAMPLE_TO_NETWORK, mode="nearest")
    return up.view(frames, batch, *up.shape[1:])
