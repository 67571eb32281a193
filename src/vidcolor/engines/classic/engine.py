"""The weight-free classic engine: the paper's structure with hand-made parts.

DESIGN.md, "Engines", item 2. Correspondence (``correspondence.py``): luminance features
(``features.py``) on a grid an eighth of the working size (the official feature grid,
REFERENCE.md §4), the paper's centred-cosine correlation with its argmax warp and
max-confidence map (Eq. 3-5, the official T = 1e-10 limit); the matches are then refined by
local search on a grid twice as fine, and each fine cell takes its match's colour.
Colorization (``colorize.py``): warped colours and the previous output carried by optical
flow (in propagation mode also read straight from the reference where the chain drifted),
fused by confidence and spread edge-aware. ``output_size`` is the working size times
``processing_scale`` (1 by default).

Implements the ``Engine`` protocol of ``engines/base.py``: Lab tensors with centred L, state
passed explicitly (``ClassicState``), the reference side computed once (``ClassicReference``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from vidcolor.color.lab import L_MEAN, L_RANGE
from vidcolor.color.resize import resize_area
from vidcolor.engines import scene_match
from vidcolor.engines.classic import colorize, correspondence, features
from vidcolor.engines.base import Correspondence
from vidcolor.errors import OptionError

# Centred L lies in [-50, 50] (REFERENCE.md §2.4); features and flow work on L in [0, 1]:
# (centred L + L_MEAN) / L_RANGE.
# Below this the features' blurs and the flow pyramid have nothing to work with.
MIN_WORKING_SIDE = 16
# Colour, flow and smoothing run at this fraction of the working size (speed: see bench/).
DEFAULT_PROCESSING_SCALE = 1.0
# The refined grid is twice as fine as the global-search grid (stride 4 instead of 8).
FINE_PER_COARSE = 2


@dataclass(frozen=True)
class ClassicSettings:
    """Everything tunable about the engine (defaults measured in bench/classic_quality.py and,
    for the colorization step, bench/footage_quality.py)."""

    feature_weights: features.FeatureWeights = field(default_factory=features.FeatureWeights)
    # True: read the reference's full-detail ab along the matches (``sample_matches``);
    # False: each fine cell gets its match's mean colour, upsampled bilinearly. Full detail
    # scored +0.2 dB PSNR on the demo clip but flickers (warp error 4.3 against the truth's
    # 3.6, where mean colours give 2.4): off by default.
    detail_warp: bool = False
    # Local search of the fine-grid refinement: window radius (fine cells) and PatchMatch
    # propagation rounds.
    refine_radius: int = 2
    propagation_rounds: int = 2
    # Principal axes of the reference's features the cosine is computed on (0: all channels).
    feature_dims: int = 0
    processing_scale: float = DEFAULT_PROCESSING_SCALE
    fusion: colorize.FusionSettings = field(default_factory=colorize.FusionSettings)


@dataclass
class ReferenceLevel:
    """The reference's features on one grid: (C, M) flattened for the global search or
    (C, gh, gw) for the local one; centred and normalised. ``spread`` (1, C, 1, 1) scales the
    frames' channels the same way."""

    features: torch.Tensor
    spread: torch.Tensor
    grid: tuple[int, int]
    axes: torch.Tensor | None = None


@dataclass
class ClassicReference:
    """Everything that depends only on the reference (computed once, ``prepare_reference``).

    ``coarse``/``fine``: its features on the global-search grid and on the grid twice as fine
    where matches are refined; ``lab``
    (1, 3, h, w) centred Lab at processing size; ``fine_ab`` (1, 2, fh, fw) its mean colour per
    fine cell; ``scene`` its keypoints for ``reference_match``.
    """

    coarse: ReferenceLevel
    fine: ReferenceLevel
    lab: torch.Tensor
    fine_ab: torch.Tensor
    scene: scene_match.SceneKeys


@dataclass
class ClassicState:
    """The previous frame's centred L (1, 1, h, w) and ab (1, 2, h, w); None before any frame.

    ``colours`` (numpy, at the processing size): the previous output with where its colours
    came from (``colorize.Colours``), so the next frame can tell carried colours that still
    sit on their surface from ones that slid off. ``keyframe`` (3, h, w) centred Lab: in
    propagation mode the reference (the clip's first frame in colour), read directly where
    the frame-to-frame chain drifted; None in exemplar mode.
    """

    l: torch.Tensor | None = None
    ab: torch.Tensor | None = None
    colours: colorize.Colours | None = None
    keyframe: np.ndarray | None = None


def cell_centres(grid: tuple[int, int], size: tuple[int, int], like: torch.Tensor
                 ) -> torch.Tensor:
    """(1, 2, gh, gw): the (row, col) pixel centre of each grid cell of a (h, w) picture."""
    rows = (torch.arange(grid[0], dtype=like.dtype, device=like.device) + 0.5) \
        * (size[0] / grid[0]) - 0.5
    cols = (torch.arange(grid[1], dtype=like.dtype, device=like.device) + 0.5) \
        * (size[1] / grid[1]) - 0.5
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"))[None]


def sample_matches(ref_ab: torch.Tensor, matched: torch.Tensor, size: tuple[int, int]
                   ) -> torch.Tensor:
    """Reference ab at full detail along the correspondence (a nearest-neighbour field).

    ``matched`` (B, 2, gh, gw): for each frame cell, the reference position (row, col, in
    ``ref_ab``'s pixels) its features matched. Every pixel of the cell reads the reference at
    the same offset from that position as it has from its cell's centre, so colour detail
    finer than the grid survives (a frame that is its own reference is reproduced exactly).
    """
    grid = tuple(matched.shape[-2:])
    offsets = matched - cell_centres(grid, size, matched)
    offsets = F.interpolate(offsets, size=size, mode="nearest")
    ref_h, ref_w = ref_ab.shape[-2:]
    rows = torch.arange(size[0], dtype=matched.dtype, device=matched.device).view(-1, 1)
    cols = torch.arange(size[1], dtype=matched.dtype, device=matched.device).view(1, -1)
    y = (rows + offsets[:, 0]) * (2.0 / max(ref_h - 1, 1)) - 1.0
    x = (cols + offsets[:, 1]) * (2.0 / max(ref_w - 1, 1)) - 1.0
    return F.grid_sample(ref_ab.expand(matched.shape[0], -1, -1, -1),
                         torch.stack((x, y), dim=-1), mode="bilinear", padding_mode="border",
                         align_corners=True)


def _to_numpy(tensor: torch.Tensor) -> np.ndarray:
    """On the CPU in the tensor's own dtype: a float64 engine colorizes in float64 too."""
    return tensor.detach().cpu().numpy()


class ClassicEngine:
    """Exemplar-based video colorization without learned weights."""

    name = "classic"
    official_postprocess = False  # it spreads its colours edge-aware itself
    # Mean confidence below which the reference is reported as a poor match. Measured on the
    # demo clip and three panned scikit-image scenes: same-scene references 0.956-0.977,
    # unrelated photographs 0.890-0.965, a synthetic colour wheel 0.857. Hand-made features
    # only separate gross mismatches, so the threshold is set to catch just those.
    low_confidence = 0.90
    # ``reference_match`` below which a shot's best reference is reported as a poor match
    # (the keypoint scene match, measured in bench/reference_matching.py).
    low_match = scene_match.LOW_SCENE_MATCH

    def __init__(self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 settings: ClassicSettings | None = None):
        self.device = torch.device(device)
        self.dtype = dtype
        # Half precision is not enough for the cosine ranking; compute in float32 at least.
        self.compute_dtype = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        self.settings = settings or ClassicSettings()

    # -- sizes ---------------------------------------------------------------------------------

    def check_working_size(self, height: int, width: int) -> None:
        if min(height, width) < MIN_WORKING_SIDE:
            raise OptionError(f"the classic engine needs a working size of at least "
                              f"{MIN_WORKING_SIDE}x{MIN_WORKING_SIDE}, got {height}x{width}")

    def valid_working_size(self, height: int, width: int) -> tuple[int, int]:
        return max(height, MIN_WORKING_SIDE), max(width, MIN_WORKING_SIDE)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        scale = self.settings.processing_scale
        return max(MIN_WORKING_SIDE // 2, round(height * scale)), \
            max(MIN_WORKING_SIDE // 2, round(width * scale))

    # -- correspondence ------------------------------------------------------------------------

    def _check_lab(self, tensor: torch.Tensor, channels: int, what: str) -> None:
        if tensor.ndim != 4 or tensor.shape[1] != channels:
            raise ValueError(f"classic engine: {what} must be (B, {channels}, H, W), got "
                             f"{tuple(tensor.shape)}")
        self.check_working_size(*tensor.shape[-2:])

    def _feature_levels(self, luminance: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw features on the fine grid and, pooled 2x2, on the coarse (global) grid."""
        coarse_grid = features.grid_size(*luminance.shape[-2:])
        fine = features.raw_features(
            luminance, (coarse_grid[0] * FINE_PER_COARSE, coarse_grid[1] * FINE_PER_COARSE))
        return fine, F.avg_pool2d(fine, FINE_PER_COARSE)

    def _scale(self, raw: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
        scale = features.group_scale(self.settings.feature_weights, raw)
        return raw * (scale / spread)

    def _reference_level(self, raw: torch.Tensor) -> ReferenceLevel:
        spread = features.channel_spread(raw)
        scaled = self._scale(raw, spread).flatten(2)
        dims = self.settings.feature_dims
        axes = correspondence.principal_axes(scaled[0], dims) if dims else None
        flat = correspondence.centre_and_normalize(scaled, axes)[0]
        return ReferenceLevel(features=flat, spread=spread, grid=tuple(raw.shape[-2:]),
                              axes=axes)

    def prepare_reference(self, ref_lab: torch.Tensor) -> ClassicReference:
        self._check_lab(ref_lab, 3, "ref_lab")
        lab = ref_lab[:1].to(self.device, self.compute_dtype)
        luminance = (lab[:, :1] + L_MEAN) / L_RANGE
        fine_raw, coarse_raw = self._feature_levels(luminance)
        fine = self._reference_level(fine_raw)
        return ClassicReference(
            coarse=self._reference_level(coarse_raw), fine=fine,
            lab=resize_area(lab, self.output_size(*lab.shape[-2:])),
            fine_ab=resize_area(lab[:, 1:], fine.grid),
            scene=scene_match.describe(ref_lab[:1, :1]))

    def _frame_level(self, raw: torch.Tensor, level: ReferenceLevel) -> torch.Tensor:
        """(B, C, N) centred, normalised frame features scaled like the reference's."""
        return correspondence.centre_and_normalize(self._scale(raw, level.spread).flatten(2),
                                                   level.axes)

    def _coarse_offsets(self, coarse_raw: torch.Tensor, ref: ClassicReference,
                        fine_grid: tuple[int, int]) -> torch.Tensor:
        """Global argmax on the coarse grid -> integer offsets (B, 2, fh, fw) on the fine grid.

        Cell centres on a grid of its own size are the integer cell indices, so the warped
        "colour" of the paper's Eq. 4 is here the matched reference cell itself.
        """
        batch, _, grid_h, grid_w = coarse_raw.shape
        like = coarse_raw
        ref_cells = cell_centres(ref.coarse.grid, ref.coarse.grid, like).flatten(2)[0]
        matched, _ = correspondence.match(self._frame_level(coarse_raw, ref.coarse),
                                          ref.coarse.features, ref_cells, None)
        offsets = matched.view(batch, 2, grid_h, grid_w) - cell_centres((grid_h, grid_w),
                                                                        (grid_h, grid_w), like)
        fine_per_cell = torch.tensor([ref.fine.grid[0] / ref.coarse.grid[0],
                                      ref.fine.grid[1] / ref.coarse.grid[1]],
                                     dtype=like.dtype, device=like.device).view(1, 2, 1, 1)
        offsets = F.interpolate(offsets.round() * fine_per_cell, size=fine_grid, mode="nearest")
        return offsets.round().long()

    def _read_colors(self, ref: ClassicReference, offsets: torch.Tensor,
                     size: tuple[int, int]) -> torch.Tensor:
        """The reference's ab along fine-grid matches (B, 2, fh, fw) -> (B, 2, *size)."""
        batch, _, fine_h, fine_w = offsets.shape
        like = ref.lab
        matched = cell_centres((fine_h, fine_w), (fine_h, fine_w), like) + offsets.to(like.dtype)
        # A position whose whole search left the reference (only when the grids' shapes
        # differ a lot) is clamped to it; its similarity is -1 anyway.
        limit = torch.tensor([ref.fine.grid[0] - 1, ref.fine.grid[1] - 1],
                             dtype=like.dtype, device=like.device).view(1, 2, 1, 1)
        matched = torch.minimum(matched.clamp_min(0), limit)
        if self.settings.detail_warp:
            cell = torch.tensor([like.shape[-2] / ref.fine.grid[0],
                                 like.shape[-1] / ref.fine.grid[1]],
                                dtype=like.dtype, device=like.device).view(1, 2, 1, 1)
            return sample_matches(like[:, 1:], (matched + 0.5) * cell - 0.5, size)
        index = (matched[:, 0] * ref.fine.grid[1] + matched[:, 1]).long()
        colors = ref.fine_ab.flatten(2)[0][:, index.flatten()]  # (2, B * fh * fw)
        colors = colors.view(2, batch, fine_h, fine_w).transpose(0, 1)
        return F.interpolate(colors, size=size, mode="bilinear", align_corners=False)

    def correspond(self, frames_l: torch.Tensor, ref: ClassicReference) -> Correspondence:
        """Global argmax on the coarse grid, then local refinement on the fine grid.

        The coarse search is the paper's correlation (Eq. 3-5, argmax limit); the fine search
        only looks around where the coarse match points, so the correspondence gets the fine
        grid's precision for a small fraction of the fine grid's all-pairs cost. Returns the
        warped ab and the max cosine of each fine cell, both at ``output_size``.
        """
        self._check_lab(frames_l, 1, "frames_l")
        # No luminance remapping is needed where exposures differ: every feature is linear in
        # L, and centring plus normalisation cancel any gain and offset (tested).
        luminance = (frames_l.to(self.device, self.compute_dtype) + L_MEAN) / L_RANGE
        fine_raw, coarse_raw = self._feature_levels(luminance)
        batch, _, fine_h, fine_w = fine_raw.shape
        offsets, similarity = correspondence.refine_matches(
            self._frame_level(fine_raw, ref.fine).view(batch, -1, fine_h, fine_w),
            ref.fine.features.view(-1, *ref.fine.grid),
            self._coarse_offsets(coarse_raw, ref, (fine_h, fine_w)),
            radius=self.settings.refine_radius,
            propagation_rounds=self.settings.propagation_rounds)
        size = self.output_size(*frames_l.shape[-2:])
        similarity = torch.nan_to_num(similarity, neginf=-1.0)[:, None]
        return Correspondence(
            warped_ab=self._read_colors(ref, offsets, size).to(self.dtype),
            confidence=F.interpolate(similarity, size=size, mode="bilinear",
                                     align_corners=False).to(self.dtype),
        )

    def reference_match(self, frames_l: torch.Tensor, ref: ClassicReference) -> float:
        """The shared keypoint scene match (``engines/scene_match.py``): this engine's own
        features do not separate scenes reliably (its mean confidence is high against any
        textured picture; bench/reference_matching.py compares them)."""
        self._check_lab(frames_l, 1, "frames_l")
        return scene_match.scene_match(frames_l, ref.scene)

    def mutual_match(self, frames_l: torch.Tensor, ref: ClassicReference) -> float:
        """This engine's own similarity, kept for bench/reference_matching.py's comparison: the
        fraction of coarse frame cells whose best reference cell picks them back (mutual
        nearest neighbours), mean over the frames, in [0, 1]."""
        self._check_lab(frames_l, 1, "frames_l")
        luminance = (frames_l.to(self.device, self.compute_dtype) + L_MEAN) / L_RANGE
        _, coarse_raw = self._feature_levels(luminance)
        frame = self._frame_level(coarse_raw, ref.coarse)  # (B, C, N)
        similarity = torch.einsum("bcn,cm->bnm", frame, ref.coarse.features)
        to_ref = similarity.argmax(dim=2)  # (B, N)
        back = similarity.argmax(dim=1)  # (B, M)
        cells = torch.arange(frame.shape[2], device=frame.device).expand_as(to_ref)
        return float((back.gather(1, to_ref) == cells).float().mean())

    # -- colorization --------------------------------------------------------------------------

    def initial_state(self, ref: ClassicReference, propagate: bool) -> ClassicState:
        """Exemplar mode: no previous output. Propagation: the reference is frame 0's colours,
        read where they are (no drift, nothing filled)."""
        if not propagate:
            return ClassicState()
        lab = _to_numpy(ref.lab[0])
        return ClassicState(l=ref.lab[:, :1], ab=ref.lab[:, 1:],
                            colours=colorize.Colours.read_in_place(lab[0], lab[1:]), keyframe=lab)

    def _previous_colours(self, state: ClassicState, size: tuple[int, int]) -> colorize.Colours:
        """The state's colours at the processing size (rebuilt from its L and ab when the
        state has none or another size: the colours count as read where they are)."""
        if state.colours is not None and state.colours.ab.shape[-2:] == tuple(size):
            return state.colours
        l_prev = _to_numpy(resize_area(state.l.to(self.compute_dtype), size)[0, 0])
        ab_prev = _to_numpy(resize_area(state.ab.to(self.compute_dtype), size)[0])
        return colorize.Colours.read_in_place(l_prev, ab_prev)

    def step(self, frame_l: torch.Tensor, corr: Correspondence, state: ClassicState
             ) -> tuple[torch.Tensor, ClassicState]:
        self._check_lab(frame_l, 1, "frame_l")
        if len(corr) != 1 or frame_l.shape[0] != 1:
            raise ValueError(f"classic engine: step takes one frame, got frame_l "
                             f"{tuple(frame_l.shape)} and {len(corr)} correspondences")
        fusion = self.settings.fusion
        size = self.output_size(*frame_l.shape[-2:])
        l_now = resize_area(frame_l.to(self.device, self.compute_dtype), size)
        ref_ab = resize_area(corr.warped_ab.to(self.compute_dtype), size)
        similarity = resize_area(corr.confidence.to(self.compute_dtype), size)
        l_np = _to_numpy(l_now[0, 0])
        ref_weight = colorize.reference_weight(_to_numpy(similarity[0, 0]), fusion)
        carried = None
        if state.ab is not None and state.l is not None:
            previous_l = _to_numpy(resize_area(state.l.to(self.compute_dtype), size)[0, 0])
            motion = colorize.frame_motion((l_np + L_MEAN) / L_RANGE,
                                           (previous_l + L_MEAN) / L_RANGE, fusion)
            carried = colorize.carry_chain(motion, l_np, self._previous_colours(state, size),
                                           fusion)
            keyframe = state.keyframe
            if fusion.use_keyframe and keyframe is not None \
                    and keyframe.shape[-2:] == tuple(size):
                carried = colorize.read_keyframe(l_np, keyframe, carried, fusion)
        ab, colours = colorize.fuse_and_fill(l_np, _to_numpy(ref_ab[0]), ref_weight, carried,
                                             fusion)
        ab_tensor = torch.from_numpy(ab)[None].to(self.device, self.compute_dtype)
        new_state = ClassicState(l=l_now, ab=ab_tensor, colours=colours, keyframe=state.keyframe)
        return ab_tensor.to(self.dtype), new_state
