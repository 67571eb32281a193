"""``--source hf:ORG/REPO[@REV]``: converted weights through huggingface_hub.

The real ``hf_hub_download`` talks to a local fake Hub (tests/fake_servers.FakeHubServer) via
``HF_ENDPOINT``, with its cache in tmp_path (``HF_HUB_CACHE``).
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from fake_servers import TINY_LAYOUT, FakeHubServer, bypass_proxies, tiny_converter, tiny_state_dict
from safetensors.torch import load_file, save

from vidcolor.errors import DownloadError, OptionError, WeightsError
from vidcolor.weights import cache, download, registry
from vidcolor.weights.hf import DEFAULT_REVISION, install_from_hf, parse_hf_spec

REPO = "vidcolor-test/devc-converted"
KINDS = tuple(TINY_LAYOUT)


def converted_files(scale: float = 1.0) -> dict[str, bytes]:
    return {f"{kind}.safetensors": save({k: v * scale for k, v in tiny_state_dict(kind).items()}) for kind in KINDS}


@pytest.fixture(autouse=True)
def _local_servers_bypass_proxies(monkeypatch):
    bypass_proxies(monkeypatch)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fake Hub with REPO at `main` and at tag `v1` (different contents), wired via env."""
    import huggingface_hub.constants as hub_constants

    repos = {REPO: {"main": converted_files(1.0), "v1": converted_files(2.0)}}
    with FakeHubServer(repos) as server:
        # vidcolor's hf.py reads these two at call time.
        monkeypatch.setenv("HF_ENDPOINT", server.base_url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        # huggingface_hub reads its switches once, at import: set the constants themselves.
        # Telemetry off, or its user-agent code fetches an "agent registry" from the real Hub
        # and caches it under ~/.cache/huggingface.
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(hub_constants, "HF_HUB_DISABLE_TELEMETRY", True)
        monkeypatch.setattr(hub_constants, "HF_HUB_DISABLE_PROGRESS_BARS", True)
        monkeypatch.setenv("VIDCOLOR_HOME", str(tmp_path / "vidcolor-home"))
        yield server


def tiny_set() -> registry.WeightSet:
    return dataclasses.replace(registry.DEVC_RELEASE, name="tiny")


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("hf:org/repo", ("org/repo", DEFAULT_REVISION)),
        ("org/repo@v1.0", ("org/repo", "v1.0")),
        ("hf:my-org/my_repo.x@0123456789abcdef0123456789abcdef01234567",
         ("my-org/my_repo.x", "0123456789abcdef0123456789abcdef01234567")),
    ],
)
def test_parse_hf_spec(spec, expected):
    assert parse_hf_spec(spec) == expected


@pytest.mark.parametrize("spec", ["hf:", "hf:repo-only", "hf:org/repo@", "hf:a/b/c", "hf:org/re po"])
def test_parse_hf_spec_rejects(spec):
    with pytest.raises(OptionError, match="hf:ORG/REPO"):
        parse_hf_spec(spec)


def test_pinned_revision_is_downloaded_into_the_hub_cache(hub, tmp_path):
    paths = install_from_hf(f"{REPO}@v1", kinds=KINDS)
    assert set(paths) == set(KINDS)
    for kind, path in paths.items():
        assert tmp_path / "hf-cache" in path.parents
        loaded = load_file(str(path))
        for key, tensor in tiny_state_dict(kind).items():
            assert torch.equal(loaded[key], tensor * 2.0)
    resolved = {r.path for r in hub.requests()}
    assert resolved == {f"/{REPO}/resolve/v1/{kind}.safetensors" for kind in KINDS}


def test_install_from_hf_source_uses_main_by_default(hub):
    weight_set = tiny_set()
    target = download.install(source=f"hf:{REPO}", weight_set=weight_set, converter=tiny_converter())
    assert all("/resolve/main/" in r.path for r in hub.requests())
    for kind in KINDS:
        loaded = load_file(str(cache.converted_path(target, kind)))
        assert not cache.converted_path(target, kind).is_symlink()  # a copy, not a Hub-cache link
        for key, tensor in tiny_state_dict(kind).items():
            assert torch.equal(loaded[key], tensor)
    manifest = json.loads(cache.manifest_path(target).read_text())
    assert manifest["source"] == f"hf:{REPO}" and manifest["members"] == {}
    assert len(download.verify(weight_set, converter=tiny_converter())) == 3


@pytest.mark.parametrize(
    "spec, fragment",
    [
        ("hf:vidcolor-test/missing", "repository not found"),
        (f"hf:{REPO}@no-such-tag", "revision 'no-such-tag' not found"),
    ],
)
def test_hub_errors_are_one_line_with_the_repo_and_hint(hub, spec, fragment):
    weight_set = tiny_set()
    with pytest.raises(DownloadError) as raised:
        download.install(source=spec, weight_set=weight_set, converter=tiny_converter())
    message = str(raised.value)
    assert "\n" not in message and fragment in message
    assert hub.base_url in message and "--from-file" in message
    assert not cache.installed_dir(weight_set).exists()


def test_missing_file_in_the_repo_names_it(hub):
    hub.repos[REPO]["main"].pop("colornet.safetensors")
    with pytest.raises(DownloadError, match=r"has no colornet\.safetensors"):
        install_from_hf(REPO, kinds=KINDS)


def test_repo_with_a_wrong_layout_installs_nothing(hub):
    files = hub.repos[REPO]["main"]
    files["colornet.safetensors"] = save({"head.weight": torch.zeros(1)})
    weight_set = tiny_set()
    with pytest.raises(WeightsError, match="colornet"):
        download.install(source=f"hf:{REPO}", weight_set=weight_set, converter=tiny_converter())
    assert not cache.installed_dir(weight_set).exists()
    assert [p.name for p in cache.installed_dir(weight_set).parent.iterdir()] == []
