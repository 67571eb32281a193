"""Where weights live on disk.

Layout under the home directory::

    weights/<set>/<kind>.safetensors   converted, verified weights (what the engine loads)
    weights/<set>/manifest.json        SHA-256 of each installed file, written at install time
    downloads/<set>/                   partial and extracted members, kept across runs to resume

The install directory appears in one atomic rename, so its presence means a complete install.
"""

from __future__ import annotations

import os
from pathlib import Path

from vidcolor.weights.registry import DEFAULT, WeightSet

HOME_ENV = "VIDCOLOR_HOME"
XDG_CACHE_ENV = "XDG_CACHE_HOME"
APP_DIR_NAME = "vidcolor"

# Must match the file name that ``convert.save_converted`` writes: ``<kind>.safetensors``.
CONVERTED_SUFFIX = ".safetensors"
MANIFEST_NAME = "manifest.json"


def weights_home() -> Path:
    """$VIDCOLOR_HOME, else $XDG_CACHE_HOME/vidcolor, else ~/.cache/vidcolor (XDG's default)."""
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg_cache = os.environ.get(XDG_CACHE_ENV)
    # The XDG spec says a relative path in the variable is invalid and must be ignored.
    if xdg_cache and Path(xdg_cache).is_absolute():
        return Path(xdg_cache) / APP_DIR_NAME
    return Path.home() / ".cache" / APP_DIR_NAME


def installed_dir(weight_set: WeightSet = DEFAULT) -> Path:
    """Directory holding the converted safetensors of ``weight_set``."""
    return weights_home() / "weights" / weight_set.name


def downloads_dir(weight_set: WeightSet = DEFAULT) -> Path:
    """Directory for partial downloads and extracted members of ``weight_set``."""
    return weights_home() / "downloads" / weight_set.name


def converted_path(directory: Path, kind: str) -> Path:
    """The converted file of checkpoint ``kind`` inside ``directory``."""
    return Path(directory) / f"{kind}{CONVERTED_SUFFIX}"


def manifest_path(directory: Path) -> Path:
    return Path(directory) / MANIFEST_NAME


def is_installed(weight_set: WeightSet = DEFAULT) -> bool:
    """True when every converted file and the manifest are present (not a content check:
    ``download.verify`` does that)."""
    directory = installed_dir(weight_set)
    expected = [converted_path(directory, kind) for kind in weight_set.checkpoints]
    expected.append(manifest_path(directory))
    return all(path.is_file() for path in expected)
