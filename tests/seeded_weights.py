"""Deterministic stand-in weights with the released checkpoints' exact layout (tests and bench/).

The golden data (``tests/fixtures/golden_modules.npz``) was produced by the official modules
loaded with these values, so tests and benchmarks can run the real architecture without the
0.8 GB release. The rule is GOLDEN.md's: for the key at 0-based position ``i`` of a checkpoint's
ordered state dict, draw ``u ~ U[0, 1)`` in float64 from a generator seeded with
``2019 + i`` and use ``(2u - 1) * b`` with ``b = 1 / sqrt(fan_in)`` of the key's conv weight
(PyTorch's default init bound); PReLU slopes are their 0.25 default.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch

from vidcolor.weights.convert import CHECKPOINTS, module_class, official_layout, remap_official

BASE_SEED = 2019  # GOLDEN.md: the seed of key i is BASE_SEED + i
PRELU_DEFAULT_SLOPE = 0.25  # nn.PReLU() init value, used as is (no random draw)


def _init_bound(weight_shape: tuple[int, ...]) -> float:
    fan_in = math.prod(weight_shape[1:])
    return 1.0 / math.sqrt(fan_in)


def seeded_official_state_dict(kind: str) -> "OrderedDict[str, torch.Tensor]":
    """Seeded float64 weights for one checkpoint, under the OFFICIAL keys, in layout order."""
    layout = official_layout(kind)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for index, (key, shape) in enumerate(layout.items()):
        owner = module_class(kind, key)
        if owner == "PReLU":
            state[key] = torch.full(shape, PRELU_DEFAULT_SLOPE, dtype=torch.float64)
            continue
        if owner not in ("Conv2d", "Linear"):
            raise ValueError(f"seeded weights: no init rule for {owner} key {key!r} of {kind}")
        if key.endswith(".weight"):
            bound = _init_bound(shape)
        elif key.endswith(".bias"):
            bound = _init_bound(layout[key[: -len("bias")] + "weight"])
        else:
            raise ValueError(f"seeded weights: key {key!r} of {kind} is neither weight nor bias")
        generator = torch.Generator().manual_seed(BASE_SEED + index)
        uniform = torch.rand(shape, generator=generator, dtype=torch.float64)
        state[key] = uniform.mul_(2).sub_(1).mul_(bound)  # (2u - 1) * b, in place (60 M values)
    return state


def seeded_converted(dtype: torch.dtype = torch.float32) -> dict[str, dict[str, torch.Tensor]]:
    """All three seeded checkpoints remapped to our names, cast to ``dtype`` after drawing."""
    return {
        kind: {name: value.to(dtype) for name, value in remap_official(kind, seeded_official_state_dict(kind)).items()}
        for kind in CHECKPOINTS
    }


def write_seeded_release_zip(path):
    """A zip shaped like the official release (the registry's member paths) holding the seeded
    float32 weights, saved with torch.save as the official .pth files are; returns ``path``."""
    import io
    import zipfile
    from pathlib import Path

    from vidcolor.weights import registry

    path = Path(path)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for member in registry.DEVC_RELEASE.members:
            state = {k: v.float() for k, v in seeded_official_state_dict(member.checkpoint).items()}
            buffer = io.BytesIO()
            torch.save(state, buffer)
            archive.writestr(member.path_in_zip, buffer.getvalue())
        archive.writestr("data/vgg19_gray.pth", b"not needed for inference")
    return path
