"""Official DEVC checkpoints -> our module names, and the converted safetensors files.

The key map is data: one explicit table per checkpoint, official key -> our parameter name
(``None`` for a tensor the release ships but inference never reads). Conversion is strict:
every key of ``layout.json`` must be present with its exact shape, no other key may appear,
and the first problem is named in a ``WeightsError``. Tensors keep the checkpoint's dtype
(float32 in the release); the engine casts on load.
"""

from __future__ import annotations

import json
import pickle
from collections import OrderedDict
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Mapping

import torch

from vidcolor.errors import WeightsError

CHECKPOINTS = ("vgg19_conv", "nonlocal_net", "colornet")  # layout.json's names
CONVERTED_FILES = {kind: f"{kind}.safetensors" for kind in CHECKPOINTS}

# --- vgg19_conv.pth (VGG19_pytorch, REFERENCE.md §3) -> models.vgg19.VGG19Features ----------
# Inference stops at relu5_2: conv5_3 and conv5_4 are shipped, checked, and dropped.
VGG19_KEY_MAP: dict[str, str | None] = {
    "conv1_1.weight": "block1.conv1.weight", "conv1_1.bias": "block1.conv1.bias",
    "conv1_2.weight": "block1.conv2.weight", "conv1_2.bias": "block1.conv2.bias",
    "conv2_1.weight": "block2.conv1.weight", "conv2_1.bias": "block2.conv1.bias",
    "conv2_2.weight": "block2.conv2.weight", "conv2_2.bias": "block2.conv2.bias",
    "conv3_1.weight": "block3.conv1.weight", "conv3_1.bias": "block3.conv1.bias",
    "conv3_2.weight": "block3.conv2.weight", "conv3_2.bias": "block3.conv2.bias",
    "conv3_3.weight": "block3.conv3.weight", "conv3_3.bias": "block3.conv3.bias",
    "conv3_4.weight": "block3.conv4.weight", "conv3_4.bias": "block3.conv4.bias",
    "conv4_1.weight": "block4.conv1.weight", "conv4_1.bias": "block4.conv1.bias",
    "conv4_2.weight": "block4.conv2.weight", "conv4_2.bias": "block4.conv2.bias",
    "conv4_3.weight": "block4.conv3.weight", "conv4_3.bias": "block4.conv3.bias",
    "conv4_4.weight": "block4.conv4.weight", "conv4_4.bias": "block4.conv4.bias",
    "conv5_1.weight": "block5.conv1.weight", "conv5_1.bias": "block5.conv1.bias",
    "conv5_2.weight": "block5.conv2.weight", "conv5_2.bias": "block5.conv2.bias",
    "conv5_3.weight": None, "conv5_3.bias": None,  # after relu5_2: never used
    "conv5_4.weight": None, "conv5_4.bias": None,
}

# --- nonlocal_net_iter_76000.pth (WarpNet, REFERENCE.md §4) -> models.correspondence ---------
# The official Sequential indices: .1 conv, .3 PReLU, .5 conv, .7 PReLU (layer5_1 has its Up2
# at index 5, so its second conv / PReLU are .6 / .8).
CORRESPONDENCE_KEY_MAP: dict[str, str | None] = {
    "layer2_1.1.weight": "branch_relu2.conv1.weight", "layer2_1.1.bias": "branch_relu2.conv1.bias",
    "layer2_1.3.weight": "branch_relu2.prelu1.weight",
    "layer2_1.5.weight": "branch_relu2.conv2.weight", "layer2_1.5.bias": "branch_relu2.conv2.bias",
    "layer2_1.7.weight": "branch_relu2.prelu2.weight",
    "layer3_1.1.weight": "branch_relu3.conv1.weight", "layer3_1.1.bias": "branch_relu3.conv1.bias",
    "layer3_1.3.weight": "branch_relu3.prelu1.weight",
    "layer3_1.5.weight": "branch_relu3.conv2.weight", "layer3_1.5.bias": "branch_relu3.conv2.bias",
    "layer3_1.7.weight": "branch_relu3.prelu2.weight",
    "layer4_1.1.weight": "branch_relu4.conv1.weight", "layer4_1.1.bias": "branch_relu4.conv1.bias",
    "layer4_1.3.weight": "branch_relu4.prelu1.weight",
    "layer4_1.5.weight": "branch_relu4.conv2.weight", "layer4_1.5.bias": "branch_relu4.conv2.bias",
    "layer4_1.7.weight": "branch_relu4.prelu2.weight",
    "layer5_1.1.weight": "branch_relu5.conv1.weight", "layer5_1.1.bias": "branch_relu5.conv1.bias",
    "layer5_1.3.weight": "branch_relu5.prelu1.weight",
    "layer5_1.6.weight": "branch_relu5.conv2.weight", "layer5_1.6.bias": "branch_relu5.conv2.bias",
    "layer5_1.8.weight": "branch_relu5.prelu2.weight",
    "layer.0.conv1.weight": "fusion.0.conv1.weight", "layer.0.conv1.bias": "fusion.0.conv1.bias",
    "layer.0.prelu.weight": "fusion.0.prelu.weight",
    "layer.0.conv2.weight": "fusion.0.conv2.weight", "layer.0.conv2.bias": "fusion.0.conv2.bias",
    "layer.1.conv1.weight": "fusion.1.conv1.weight", "layer.1.conv1.bias": "fusion.1.conv1.bias",
    "layer.1.prelu.weight": "fusion.1.prelu.weight",
    "layer.1.conv2.weight": "fusion.1.conv2.weight", "layer.1.conv2.bias": "fusion.1.conv2.bias",
    "layer.2.conv1.weight": "fusion.2.conv1.weight", "layer.2.conv1.bias": "fusion.2.conv1.bias",
    "layer.2.prelu.weight": "fusion.2.prelu.weight",
    "layer.2.conv2.weight": "fusion.2.conv2.weight", "layer.2.conv2.bias": "fusion.2.conv2.bias",
    "theta.weight": "frame_projection.weight", "theta.bias": "frame_projection.bias",
    "phi.weight": "reference_projection.weight", "phi.bias": "reference_projection.bias",
}

# --- colornet_iter_76000.pth (ColorVidNet, REFERENCE.md §5) -> models.colorization ----------
COLORIZATION_KEY_MAP: dict[str, str | None] = {
    "conv1_1.0.weight": "enc1.conv1.weight", "conv1_1.0.bias": "enc1.conv1.bias",
    "conv1_1.2.weight": "enc1.conv2.weight", "conv1_1.2.bias": "enc1.conv2.bias",
    "conv1_2.weight": "enc1.conv3.weight", "conv1_2.bias": "enc1.conv3.bias",
    "conv1_2norm_ss.weight": "down1.weight",
    "conv2_1.weight": "enc2.conv1.weight", "conv2_1.bias": "enc2.conv1.bias",
    "conv2_2.weight": "enc2.conv2.weight", "conv2_2.bias": "enc2.conv2.bias",
    "conv2_2norm_ss.weight": "down2.weight",
    "conv3_1.weight": "enc3.conv1.weight", "conv3_1.bias": "enc3.conv1.bias",
    "conv3_2.weight": "enc3.conv2.weight", "conv3_2.bias": "enc3.conv2.bias",
    "conv3_3.weight": "enc3.conv3.weight", "conv3_3.bias": "enc3.conv3.bias",
    "conv3_3norm_ss.weight": "down3.weight",
    "conv4_1.weight": "enc4.conv1.weight", "conv4_1.bias": "enc4.conv1.bias",
    "conv4_2.weight": "enc4.conv2.weight", "conv4_2.bias": "enc4.conv2.bias",
    "conv4_3.weight": "enc4.conv3.weight", "conv4_3.bias": "enc4.conv3.bias",
    "conv5_1.weight": "dilated5.conv1.weight", "conv5_1.bias": "dilated5.conv1.bias",
    "conv5_2.weight": "dilated5.conv2.weight", "conv5_2.bias": "dilated5.conv2.bias",
    "conv5_3.weight": "dilated5.conv3.weight", "conv5_3.bias": "dilated5.conv3.bias",
    "conv6_1.weight": "dilated6.conv1.weight", "conv6_1.bias": "dilated6.conv1.bias",
    "conv6_2.weight": "dilated6.conv2.weight", "conv6_2.bias": "dilated6.conv2.bias",
    "conv6_3.weight": "dilated6.conv3.weight", "conv6_3.bias": "dilated6.conv3.bias",
    "conv7_1.weight": "middle7.conv1.weight", "conv7_1.bias": "middle7.conv1.bias",
    "conv7_2.weight": "middle7.conv2.weight", "conv7_2.bias": "middle7.conv2.bias",
    "conv7_3.weight": "middle7.conv3.weight", "conv7_3.bias": "middle7.conv3.bias",
    "conv8_1.1.weight": "dec8.up_conv.weight", "conv8_1.1.bias": "dec8.up_conv.bias",
    "conv3_3_short.weight": "dec8.skip.weight", "conv3_3_short.bias": "dec8.skip.bias",
    "conv8_2.weight": "dec8.conv2.weight", "conv8_2.bias": "dec8.conv2.bias",
    "conv8_3.weight": "dec8.conv3.weight", "conv8_3.bias": "dec8.conv3.bias",
    "conv9_1.1.weight": "dec9.up_conv.weight", "conv9_1.1.bias": "dec9.up_conv.bias",
    "conv2_2_short.weight": "dec9.skip.weight", "conv2_2_short.bias": "dec9.skip.bias",
    "conv9_2.weight": "dec9.conv2.weight", "conv9_2.bias": "dec9.conv2.bias",
    "conv10_1.1.weight": "dec10.up_conv.weight", "conv10_1.1.bias": "dec10.up_conv.bias",
    "conv1_2_short.weight": "dec10.skip.weight", "conv1_2_short.bias": "dec10.skip.bias",
    "conv10_2.weight": "dec10.conv2.weight", "conv10_2.bias": "dec10.conv2.bias",
    "conv10_ab.weight": "head.weight", "conv10_ab.bias": "head.bias",
}

KEY_MAPS: dict[str, dict[str, str | None]] = {
    "vgg19_conv": VGG19_KEY_MAP,
    "nonlocal_net": CORRESPONDENCE_KEY_MAP,
    "colornet": COLORIZATION_KEY_MAP,
}


@lru_cache(maxsize=1)
def load_layout() -> dict:
    """``layout.json`` (every key and shape of the three released checkpoints), package data."""
    text = resources.files("vidcolor.weights").joinpath("layout.json").read_text(encoding="utf-8")
    return json.loads(text)


def official_layout(kind: str) -> "OrderedDict[str, tuple[int, ...]]":
    """Ordered official key -> shape for one checkpoint."""
    _check_kind(kind)
    entries = load_layout()["checkpoints"][kind]["state_dict"]
    return OrderedDict((key, tuple(shape)) for key, shape in entries)


def module_class(kind: str, key: str) -> str:
    """The torch.nn class owning an official key (``Conv2d`` / ``PReLU``), per layout.json."""
    _check_kind(kind)
    return load_layout()["checkpoints"][kind]["module_class"][key]


def converted_layout(kind: str) -> "OrderedDict[str, tuple[int, ...]]":
    """Ordered our-name -> shape for one checkpoint after conversion (dropped keys left out)."""
    key_map = KEY_MAPS[kind]
    return OrderedDict(
        (key_map[key], shape) for key, shape in official_layout(kind).items() if key_map[key] is not None
    )


def _check_kind(kind: str) -> None:
    if kind not in CHECKPOINTS:
        raise WeightsError(f"unknown checkpoint kind {kind!r}; expected one of {', '.join(CHECKPOINTS)}")


def _check_tensors(kind: str, tensors: Mapping[str, object], expected: Mapping[str, tuple[int, ...]],
                   what: str) -> None:
    """Strict layout check; raises WeightsError naming the first missing / extra / bad key."""
    for key, shape in expected.items():
        if key not in tensors:
            raise WeightsError(f"{what}: missing key {key!r} (expected shape {list(shape)}) for {kind}")
        value = tensors[key]
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{what}: key {key!r} of {kind} is a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != shape:
            raise WeightsError(
                f"{what}: key {key!r} of {kind} has shape {list(value.shape)}, expected {list(shape)}"
            )
        if not value.is_floating_point():
            raise WeightsError(f"{what}: key {key!r} of {kind} has dtype {value.dtype}, expected floating point")
    for key in tensors:
        if key not in expected:
            raise WeightsError(f"{what}: unexpected key {key!r} in {kind}")


def check_converted(kind: str, tensors: Mapping[str, torch.Tensor]) -> None:
    """Strict check of converted tensors against the layout; WeightsError naming the first problem."""
    _check_kind(kind)
    _check_tensors(kind, tensors, converted_layout(kind), "converted weights")


def remap_official(kind: str, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official state dict -> our names. Pure; strict against layout.json; dtype kept."""
    _check_kind(kind)
    _check_tensors(kind, state_dict, official_layout(kind), "official checkpoint")
    key_map = KEY_MAPS[kind]
    return {key_map[key]: value for key, value in state_dict.items() if key_map[key] is not None}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


def _unwrap_state_dict(loaded: object, path: Path) -> Mapping[str, torch.Tensor]:
    if isinstance(loaded, Mapping) and "state_dict" in loaded and isinstance(loaded["state_dict"], Mapping):
        loaded = loaded["state_dict"]  # a training checkpoint wrapping the weights
    if not isinstance(loaded, Mapping):
        raise WeightsError(f"{path}: expected a state dict, found a {type(loaded).__name__}")
    return loaded


def load_official_checkpoint(kind: str, path: str | Path) -> dict[str, torch.Tensor]:
    """Read one released ``.pth`` safely (``weights_only=True``) and remap it strictly."""
    _check_kind(kind)
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: checkpoint file not found")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # weights_only refuses any pickle that would build arbitrary objects or run code.
        raise WeightsError(
            f"{path}: refused to load: not a plain tensor checkpoint (unpickling it would need "
            f"arbitrary code or objects)"
        ) from None
    except Exception as error:  # noqa: BLE001 - any failure to deserialise means a bad file
        raise WeightsError(f"{path}: corrupt or truncated checkpoint ({_first_line(error)})") from None
    state_dict = _unwrap_state_dict(loaded, path)
    try:
        return remap_official(kind, state_dict)
    except WeightsError as error:
        raise WeightsError(f"{path}: {error}") from None


def save_converted(directory: str | Path, kind: str, tensors: Mapping[str, torch.Tensor]) -> Path:
    """Write ``<directory>/<kind>.safetensors`` after a strict check; dtype kept."""
    from safetensors.torch import save_file

    check_converted(kind, tensors)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / CONVERTED_FILES[kind]
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(target),
              metadata={"format": "pt", "vidcolor_checkpoint": kind})
    return target


def load_converted(directory: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """All converted checkpoints of ``directory``, strictly checked: kind -> {name: tensor}."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    converted: dict[str, dict[str, torch.Tensor]] = {}
    for kind in CHECKPOINTS:
        path = directory / CONVERTED_FILES[kind]
        if not path.is_file():
            raise WeightsError(f"{path}: converted weights missing (run `vidcolor download-weights`)")
        try:
            tensors = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError, RuntimeError) as error:
            raise WeightsError(f"{path}: corrupt converted weights ({_first_line(error)})") from None
        try:
            check_converted(kind, tensors)
        except WeightsError as error:
            raise WeightsError(f"{path}: {error}") from None
        converted[kind] = tensors
    return converted
