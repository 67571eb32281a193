"""The contract between the recurrent loop (``pipeline/loop.py``) and the engines (devc, classic).

Conventions for every tensor here (the official normalisation, REFERENCE.md §2):
Lab is CIELAB D65 with **centred L** (L - 50, so in [-50, 50]) and **raw ab** (Lab units,
roughly [-128, 127]); tensors are ``(B, C, h, w)`` on the engine's device and dtype.
``h, w`` is the *working size* chosen by the preset; an engine may compute at a lower
resolution internally and returns ab at its own ``output_size``; the loop resizes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch


@dataclass
class Correspondence:
    """The frame side of the correspondence for a batch of B frames.

    ``warped_ab``: reference colors warped onto each frame, (B, 2, h', w').
    ``confidence``: max similarity per position, (B, 1, h', w') (paper Eq. 5).
    ``extra``: engine-private per-frame data the colorization step needs (e.g. frame L at
    network size); batch-first tensors, indexed like the others.
    """

    warped_ab: torch.Tensor
    confidence: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.warped_ab.shape[0])

    def __getitem__(self, i: int) -> "Correspondence":
        """Frame ``i`` of the batch, keeping the batch dimension (size 1)."""
        return Correspondence(
            self.warped_ab[i : i + 1],
            self.confidence[i : i + 1],
            {k: v[i : i + 1] for k, v in self.extra.items()},
        )


class Engine(Protocol):
    """A frozen colorization engine. Recurrent state is explicit: nothing hides in ``self``."""

    name: str
    device: torch.device
    dtype: torch.dtype
    # True: the engine's ab is the paper network's, which the official release post-processes
    # (x1.25 gain and the fast global smoother, ``color/official.py``); False: the engine
    # already spreads its colours edge-aware and its ab is used as it is.
    official_postprocess: bool
    # Mean per-frame confidence below which the reference is reported as matching poorly, on
    # this engine's own confidence scale; None: the engine's confidence is not calibrated for
    # such a warning.
    low_confidence: float | None
    # ``reference_match`` below which a shot's best reference is reported as matching poorly;
    # None: use the per-frame ``low_confidence`` ranges instead.
    low_match: float | None

    def check_working_size(self, height: int, width: int) -> None:
        """Raise ``OptionError`` naming valid sizes if the engine cannot run at this size."""

    def valid_working_size(self, height: int, width: int) -> tuple[int, int]:
        """The smallest size >= (height, width) the engine accepts (for padding)."""

    def prepare_reference(self, ref_lab: torch.Tensor) -> Any:
        """Everything that depends only on the reference, computed once. ref_lab: (1, 3, h, w)."""

    def correspond(self, frames_l: torch.Tensor, ref: Any) -> Correspondence:
        """Batched frame side: frames_l (B, 1, h, w) centred L -> warp + confidence."""

    def reference_match(self, frames_l: torch.Tensor, ref: Any) -> float:
        """How well a prepared reference matches these frames (higher is better), on a scale
        that ranks references: it chooses each shot's reference."""

    def initial_state(self, ref: Any, propagate: bool) -> Any:
        """State before frame 0: zeros (exemplar mode) or the reference itself (propagation)."""

    def step(self, frame_l: torch.Tensor, corr: Correspondence, state: Any
             ) -> tuple[torch.Tensor, Any]:
        """Colorize one frame: frame_l (1, 1, h, w), its ``corr[i]`` -> ((1, 2, h', w') ab, state)."""

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Size of the ab that ``step`` returns for a working size (devc: half of it)."""
