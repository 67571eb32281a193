"""Suite-wide fixtures: an isolated weight cache per test, and seeded devc weights laid out like
the official release (built once per session; no network)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_weights_home(tmp_path_factory, monkeypatch):
    """Removed after the test: a copy of the seeded weights is 210 MB and hundreds of tests run."""
    home = tmp_path_factory.mktemp("vidcolor-home")
    monkeypatch.setenv("VIDCOLOR_HOME", str(home))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def seeded_release_zip(tmp_path_factory) -> Path:
    """A zip shaped like the official release holding the seeded float32 weights of GOLDEN.md."""
    from seeded_weights import write_seeded_release_zip

    return write_seeded_release_zip(tmp_path_factory.mktemp("release") / "colorization_checkpoint.zip")


@pytest.fixture(scope="session")
def seeded_install(seeded_release_zip, tmp_path_factory) -> Path:
    """The seeded release installed once through `download.install(from_file=...)`; tests copy it."""
    import os

    from vidcolor.weights import download

    home = tmp_path_factory.mktemp("seeded-home")
    previous = os.environ.get("VIDCOLOR_HOME")
    os.environ["VIDCOLOR_HOME"] = str(home)
    try:
        return download.install(from_file=seeded_release_zip)
    finally:
        if previous is None:
            os.environ.pop("VIDCOLOR_HOME", None)
        else:
            os.environ["VIDCOLOR_HOME"] = previous


@pytest.fixture
def devc_weights(seeded_install, isolated_weights_home) -> Path:
    """Seeded devc weights installed in this test's weight cache (a copy: tests may damage it)."""
    from vidcolor.weights import cache

    target = cache.installed_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(seeded_install, target)
    return target
