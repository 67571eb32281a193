"""Converted weights from a Hugging Face Hub repository (``--source hf:ORG/REPO[@REV]``).

Such a repo holds the files ``convert.save_converted`` writes (``<kind>.safetensors``), so no
pickle is ever loaded from it. Downloads go through ``huggingface_hub.hf_hub_download`` and its
own cache (``$HF_HUB_CACHE``); the endpoint is ``$HF_ENDPOINT``. Pin a commit or tag with
``@REV``: without one we take the ``main`` branch, i.e. whatever it points to today.
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

from vidcolor.errors import DownloadError, OptionError
from vidcolor.weights.cache import CONVERTED_SUFFIX
from vidcolor.weights.registry import DEFAULT

HF_PREFIX = "hf:"
DEFAULT_REVISION = "main"  # the Hub's default branch; a moving target, hence the @REV option
DEFAULT_ENDPOINT = "https://huggingface.co"
# The Hub's repo id rule: ORG/NAME of letters, digits, '-', '_', '.'.
_REPO_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")


def _transport_errors() -> tuple[type[BaseException], ...]:
    """The HTTP client's own connection/timeout errors. huggingface_hub changed clients across
    versions (requests, httpx, httpx2), so take whichever are installed."""
    found: list[type[BaseException]] = []
    for module_name, class_name in (
        ("httpx2", "TransportError"),
        ("httpx", "TransportError"),
        ("requests", "RequestException"),
    ):
        try:
            found.append(getattr(importlib.import_module(module_name), class_name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


def parse_hf_spec(spec: str) -> tuple[str, str]:
    """``[hf:]ORG/REPO[@REV]`` -> (repo id, revision)."""
    text = spec[len(HF_PREFIX) :] if spec.startswith(HF_PREFIX) else spec
    repo_id, _, revision = text.partition("@")
    if not _REPO_ID.fullmatch(repo_id) or ("@" in text and not revision):
        raise OptionError(
            f"bad Hugging Face source {spec!r}: expected hf:ORG/REPO or hf:ORG/REPO@REVISION"
        )
    return repo_id, revision or DEFAULT_REVISION


def install_from_hf(
    spec: str,
    *,
    kinds: tuple[str, ...] = DEFAULT.checkpoints,
    endpoint: str | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Path]:
    """Download ``<kind>.safetensors`` for each kind; kind -> path in the Hub cache.

    The caller verifies the files (``load_converted``) before installing them. The endpoint
    and cache default to ``$HF_ENDPOINT`` / ``$HF_HUB_CACHE`` read now, not at import time.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id, revision = parse_hf_spec(spec)
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
    cache_dir = cache_dir or (Path(os.environ["HF_HUB_CACHE"]) if os.environ.get("HF_HUB_CACHE") else None)
    repo_url = f"{endpoint}/{repo_id}"
    paths: dict[str, Path] = {}
    for kind in kinds:
        filename = f"{kind}{CONVERTED_SUFFIX}"
        where = f"{repo_url}/blob/{revision}/{filename}"
        try:
            local = hf_hub_download(
                repo_id,
                filename=filename,
                revision=revision,
                endpoint=endpoint,
                cache_dir=cache_dir,
            )
        except LocalEntryNotFoundError:
            raise DownloadError(f"{where}: cannot reach the Hub and no cached copy exists") from None
        except RevisionNotFoundError:
            raise DownloadError(f"{repo_url}: revision {revision!r} not found") from None
        except EntryNotFoundError:
            raise DownloadError(f"{where}: the repository has no {filename}") from None
        except RepositoryNotFoundError:
            raise DownloadError(f"{repo_url}: repository not found (or private)") from None
        except HfHubHTTPError as error:
            status = error.response.status_code if error.response is not None else "?"
            raise DownloadError(f"{where}: HTTP {status}") from None
        except HFValidationError as error:
            raise OptionError(f"bad Hugging Face source {spec!r}: {error}") from None
        except OSError as error:
            raise DownloadError(f"{where}: {error.strerror or error}") from None
        except _transport_errors() as error:
            raise DownloadError(f"{where}: connection failed ({type(error).__name__})") from None
        paths[kind] = Path(local)
    return paths
