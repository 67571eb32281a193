"""weights/convert.py: the strict key remap, safe checkpoint loading, converted files."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from vidcolor.errors import WeightsError
from vidcolor.engines.devc.engine import DevcEngine
from vidcolor.engines.devc.network import build_colorization, build_correspondence, build_vgg19
from vidcolor.weights.convert import (
    CHECKPOINTS,
    CONVERTED_FILES,
    KEY_MAPS,
    converted_layout,
    load_converted,
    load_official_checkpoint,
    official_layout,
    remap_official,
    save_converted,
)

LAYOUT = Path(__file__).resolve().parents[1] / "src" / "vidcolor" / "weights" / "layout.json"
BUILDERS = {"vgg19_conv": build_vgg19, "nonlocal_net": build_correspondence, "colornet": build_colorization}


def synthetic_checkpoint(kind: str, dtype=torch.float32) -> "OrderedDict[str, torch.Tensor]":
    """Exactly layout.json's keys and shapes (read here from the file itself), distinct values."""
    entries = json.loads(LAYOUT.read_text())["checkpoints"][kind]["state_dict"]
    return OrderedDict((key, torch.full(shape, float(i), dtype=dtype)) for i, (key, shape) in enumerate(entries))


@pytest.mark.parametrize("kind", CHECKPOINTS)
def test_full_layout_remaps_strictly_and_loads_into_our_modules(kind):
    official = synthetic_checkpoint(kind)
    ours = remap_official(kind, official)
    assert list(ours) == list(converted_layout(kind))
    for official_key, our_key in KEY_MAPS[kind].items():
        if our_key is not None:
            assert ours[our_key] is official[official_key]  # no copy, dtype kept
    with torch.device("meta"):
        module = BUILDERS[kind]()
    module.load_state_dict(ours, strict=True, assign=True)  # every name and shape fits
    expected_dropped = {"conv5_3.weight", "conv5_3.bias", "conv5_4.weight", "conv5_4.bias"} if kind == "vgg19_conv" else set()
    assert {k for k, v in KEY_MAPS[kind].items() if v is None} == expected_dropped


def test_key_maps_cover_the_layout_exactly():
    for kind in CHECKPOINTS:
        assert set(KEY_MAPS[kind]) == set(official_layout(kind))
        kept = [v for v in KEY_MAPS[kind].values() if v is not None]
        assert len(kept) == len(set(kept))  # one-to-one


def test_missing_key_is_named():
    state = synthetic_checkpoint("nonlocal_net")
    del state["layer.1.prelu.weight"]
    with pytest.raises(WeightsError, match=r"missing key 'layer\.1\.prelu\.weight'"):
        remap_official("nonlocal_net", state)


def test_extra_key_is_named():
    state = synthetic_checkpoint("colornet")
    state["conv11.weight"] = torch.zeros(1)
    with pytest.raises(WeightsError, match=r"unexpected key 'conv11\.weight'"):
        remap_official("colornet", state)


def test_misshaped_key_is_named_with_both_shapes():
    state = synthetic_checkpoint("vgg19_conv")
    state["conv3_2.weight"] = torch.zeros(256, 256, 3, 1)
    with pytest.raises(WeightsError, match=r"'conv3_2\.weight'.*\[256, 256, 3, 1\].*\[256, 256, 3, 3\]"):
        remap_official("vgg19_conv", state)


def test_non_tensor_and_unknown_kind_are_refused():
    state = synthetic_checkpoint("nonlocal_net")
    state["theta.bias"] = [0.0] * 256
    with pytest.raises(WeightsError, match="theta.bias"):
        remap_official("nonlocal_net", state)
    with pytest.raises(WeightsError, match="unknown checkpoint kind"):
        remap_official("vgg19_gray", {})


def test_load_official_checkpoint_round_trip(tmp_path):
    state = synthetic_checkpoint("nonlocal_net")
    path = tmp_path / "nonlocal_net_iter_76000.pth"
    torch.save(state, path)
    loaded = load_official_checkpoint("nonlocal_net", path)
    assert set(loaded) == set(converted_layout("nonlocal_net"))
    assert torch.equal(loaded["frame_projection.weight"], state["theta.weight"])
    assert loaded["frame_projection.weight"].dtype == torch.float32


def test_load_official_checkpoint_names_the_bad_key_and_file(tmp_path):
    state = synthetic_checkpoint("nonlocal_net")
    state["phi.weight"] = torch.zeros(256, 256, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"bad\.pth.*'phi\.weight'"):
        load_official_checkpoint("nonlocal_net", path)


class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "code-ran"
    state = synthetic_checkpoint("nonlocal_net")
    state["theta.bias"] = _RunsCode(str(marker))
    path = tmp_path / "evil.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match="refused"):
        load_official_checkpoint("nonlocal_net", path)
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "absent"])
def test_damaged_checkpoint_files(tmp_path, damage):
    path = tmp_path / "colornet_iter_76000.pth"
    torch.save(synthetic_checkpoint("nonlocal_net"), path)
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a checkpoint" * 100)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
    with pytest.raises(WeightsError, match="colornet_iter_76000.pth"):
        load_official_checkpoint("nonlocal_net", path)


def _converted_set(dtype=torch.float32):
    return {kind: remap_official(kind, synthetic_checkpoint(kind, dtype)) for kind in CHECKPOINTS}


@pytest.fixture(scope="module")
def converted_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("converted")
    for kind, tensors in _converted_set().items():
        path = save_converted(directory, kind, tensors)
        assert path == directory / CONVERTED_FILES[kind]
    return directory


def test_converted_files_round_trip_keeping_dtype(converted_dir):
    loaded = load_converted(converted_dir)
    expected = _converted_set()
    for kind in CHECKPOINTS:
        assert set(loaded[kind]) == set(expected[kind])
        for name, value in expected[kind].items():
            assert loaded[kind][name].dtype == torch.float32
            assert torch.equal(loaded[kind][name], value)


def test_float64_is_kept_too(tmp_path):
    tensors = remap_official("nonlocal_net", synthetic_checkpoint("nonlocal_net", torch.float64))
    save_converted(tmp_path, "nonlocal_net", tensors)
    from safetensors.torch import load_file

    assert load_file(str(tmp_path / "nonlocal_net.safetensors"))["fusion.0.conv1.weight"].dtype == torch.float64


def test_save_converted_is_strict(tmp_path):
    tensors = remap_official("nonlocal_net", synthetic_checkpoint("nonlocal_net"))
    del tensors["fusion.2.prelu.weight"]
    with pytest.raises(WeightsError, match="fusion.2.prelu.weight"):
        save_converted(tmp_path, "nonlocal_net", tensors)
    assert not (tmp_path / "nonlocal_net.safetensors").exists()


@pytest.mark.parametrize("damage", ["missing", "truncated", "wrong_layout"])
def test_damaged_converted_directory(tmp_path, converted_dir, damage):
    for kind in CHECKPOINTS:
        (tmp_path / CONVERTED_FILES[kind]).write_bytes((converted_dir / CONVERTED_FILES[kind]).read_bytes())
    target = tmp_path / CONVERTED_FILES["colornet"]
    if damage == "missing":
        target.unlink()
        match = "colornet.safetensors.*missing"
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:1000])
        match = "colornet.safetensors.*corrupt"
    else:
        from safetensors.torch import save_file

        save_file({"head.weight": torch.zeros(2, 128, 1, 1)}, str(target))
        match = "colornet.safetensors.*missing key"
    with pytest.raises(WeightsError, match=match):
        load_converted(tmp_path)


def test_engine_loads_a_converted_directory(converted_dir):
    engine = DevcEngine.from_directory(converted_dir, "cpu", torch.float32)
    assert engine.correspondence.fusion[1].prelu.weight.item() == float(
        list(official_layout("nonlocal_net")).index("layer.1.prelu.weight"))
    assert not any(p.requires_grad for p in engine.colorization.parameters())


def test_engine_rejects_weights_that_do_not_fit():
    weights = _converted_set()
    weights["colornet"]["head.weight"] = torch.zeros(3, 128, 1, 1)
    with pytest.raises(WeightsError, match="colornet"):
        DevcEngine(weights, "cpu", torch.float32)
