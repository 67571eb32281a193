"""Install a weight set: fetch, check, convert, verify, then move into the cache atomically.

Every source ends in the same place: converted safetensors in a staging directory beside the
install directory, strictly re-loaded, hashed into ``manifest.json``, and only then renamed
into ``cache.installed_dir``. A failure anywhere leaves the previous install (or nothing)
untouched; partial downloads stay in ``cache.downloads_dir`` so the next run resumes them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vidcolor import __version__
from vidcolor.errors import DownloadError, OptionError, WeightsError, WeightsMissingError
from vidcolor.weights import cache
from vidcolor.weights.hf import HF_PREFIX, install_from_hf
from vidcolor.weights.registry import DEFAULT, WeightSet
from vidcolor.weights.zipfetch import DEFAULT_POLICY, FetchPolicy, fetch_members
from vidcolor.weights.zipformat import (
    CHUNK_SIZE,
    ExtractedMember,
    ProgressCallback,
    extract_members_from_file,
)

INSTALL_HINT = "download it by hand and run `vidcolor download-weights --from-file ZIP`"
MANIFEST_FORMAT = 1
PARTIAL_SUFFIXES = (".part", ".part.json")  # what stays in the downloads dir after a failure


@dataclass(frozen=True)
class Converter:
    """The steps from an official checkpoint to installed files (``convert.py``'s functions).

    A parameter so the download machinery can be tested with tiny checkpoints.
    """

    load_official: Callable[[str, Path], Mapping[str, Any]]
    save_converted: Callable[[Path, str, Mapping[str, Any]], Path]
    load_converted: Callable[[Path], Mapping[str, Mapping[str, Any]]]


def devc_converter() -> Converter:
    """The real conversion (imports torch, hence lazy)."""
    from vidcolor.weights import convert

    return Converter(convert.load_official_checkpoint, convert.save_converted, convert.load_converted)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as reader:
        while chunk := reader.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


# ==============================================================================================
# Sources -> files in a staging directory
# ==============================================================================================


def _check_http_url(source: str) -> str:
    if not source.startswith(("http://", "https://")):
        raise OptionError(
            f"unknown weights source {source!r}: expected an http(s):// URL of a release-shaped "
            f"zip or {HF_PREFIX}ORG/REPO[@REV]"
        )
    return source


def _fetch_from_urls(
    urls: tuple[str, ...],
    weight_set: WeightSet,
    work_dir: Path,
    progress: ProgressCallback | None,
    policy: FetchPolicy,
) -> tuple[str, dict[str, ExtractedMember]]:
    """Try each mirror in turn; a DownloadError moves on, anything else (corrupt data) stops."""
    if not urls:
        raise DownloadError(f"the {weight_set.name} weight set lists no download URL; {INSTALL_HINT}")
    failures: list[str] = []
    for url in urls:
        try:
            return url, fetch_members(url, weight_set.members, work_dir, progress=progress, policy=policy)
        except DownloadError as error:
            failures.append(str(error))
    raise DownloadError(f"{'; '.join(failures)}; {INSTALL_HINT}")


def _convert_members(
    weight_set: WeightSet,
    extracted: Mapping[str, ExtractedMember],
    stage: Path,
    converter: Converter,
    origin: str,
) -> None:
    for member in weight_set.members:
        path = extracted[member.path_in_zip].path
        try:
            tensors = converter.load_official(member.checkpoint, path)
        except WeightsError as error:
            # Name the archive and member, not our scratch copy (deleted when we fail).
            cause = str(error).removeprefix(f"{path}: ")
            raise WeightsError(f"{origin} ({member.path_in_zip}): {cause}") from None
        written = Path(converter.save_converted(stage, member.checkpoint, tensors))
        expected = cache.converted_path(stage, member.checkpoint)
        if written.resolve() != expected.resolve():
            raise WeightsError(f"{written}: the converter wrote an unexpected file (expected {expected})")
        del tensors  # one checkpoint in memory at a time


def _copy_converted(paths: Mapping[str, Path], weight_set: WeightSet, stage: Path) -> None:
    for kind in weight_set.checkpoints:
        shutil.copyfile(paths[kind], cache.converted_path(stage, kind))  # follows the Hub's symlinks


def _write_manifest(
    stage: Path,
    weight_set: WeightSet,
    source: str,
    extracted: Mapping[str, ExtractedMember] | None,
) -> dict:
    files = {}
    for kind in weight_set.checkpoints:
        path = cache.converted_path(stage, kind)
        files[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = {
        "format": MANIFEST_FORMAT,
        "weight_set": weight_set.name,
        "source": source,
        "installed_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "vidcolor_version": __version__,
        "files": files,
        # The zip directory's facts, recorded so the registry's pins can be filled from them.
        "members": {
            name: {"crc32": f"{member.crc32:08x}", "size": member.size}
            for name, member in (extracted or {}).items()
        },
    }
    cache.manifest_path(stage).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _swap_into_place(stage: Path, target: Path) -> None:
    """Rename ``stage`` to ``target``; an older install is moved aside first and removed after."""
    if not target.exists():
        stage.rename(target)
        return
    retired = target.with_name(f".{target.name}.retired-{uuid.uuid4().hex[:8]}")
    target.rename(retired)
    try:
        stage.rename(target)
    except OSError:
        retired.rename(target)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _clean_work_dir(work_dir: Path, *, keep_partials: bool) -> None:
    """Remove extracted members (always) and partial downloads (after a success)."""
    if not work_dir.is_dir():
        return
    if not keep_partials:
        shutil.rmtree(work_dir, ignore_errors=True)
        return
    for path in work_dir.iterdir():
        if path.is_file() and not path.name.endswith(PARTIAL_SUFFIXES):
            path.unlink(missing_ok=True)


def _stage_converted(
    source: str | None,
    from_file: Path | None,
    weight_set: WeightSet,
    stage: Path,
    work_dir: Path,
    converter: Converter,
    progress: ProgressCallback | None,
    policy: FetchPolicy,
) -> tuple[str, dict[str, ExtractedMember] | None]:
    """Write the converted files of ``weight_set`` into ``stage`` from whichever source;
    returns where they came from and, for zips, the members' directory facts."""
    if from_file is not None:
        origin = str(from_file.resolve())
        extracted = extract_members_from_file(from_file, weight_set.members, work_dir, progress=progress)
    elif source is not None and source.startswith(HF_PREFIX):
        try:
            paths = install_from_hf(source, kinds=weight_set.checkpoints)
        except DownloadError as error:
            raise DownloadError(f"{error}; {INSTALL_HINT}") from None
        _copy_converted(paths, weight_set, stage)
        return source, None
    else:
        urls = weight_set.urls if source is None else (source,)
        origin, extracted = _fetch_from_urls(urls, weight_set, work_dir, progress, policy)
    _convert_members(weight_set, extracted, stage, converter, origin)
    return origin, extracted


# ==============================================================================================
# Public API
# ==============================================================================================


def install(
    source: str | None = None,
    from_file: Path | None = None,
    *,
    weight_set: WeightSet = DEFAULT,
    progress: ProgressCallback | None = None,
    converter: Converter | None = None,
    policy: FetchPolicy = DEFAULT_POLICY,
) -> Path:
    """Install ``weight_set`` and return its directory.

    ``source``: None (the registry's URLs), an ``http(s)://`` mirror of the release zip, or
    ``hf:ORG/REPO[@REV]``. ``from_file``: a release zip on disk. Nothing is installed unless
    every file passed its CRC-32 and the strict layout check.
    """
    if source is not None and from_file is not None:
        raise OptionError("give either a source or a file to install from, not both")
    if source is not None and not source.startswith(HF_PREFIX):
        _check_http_url(source)
    if from_file is not None:
        from_file = Path(from_file)
        if not from_file.is_file():
            raise OptionError(f"{from_file}: no such file (--from-file expects the release zip)")
    converter = converter or devc_converter()

    target = cache.installed_dir(weight_set)
    work_dir = cache.downloads_dir(weight_set)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work_dir.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.installing-", dir=target.parent))
    except OSError as error:
        raise WeightsError(f"{error.filename or target.parent}: cannot create ({error.strerror})") from None

    succeeded = False
    try:
        origin, extracted = _stage_converted(
            source, from_file, weight_set, stage, work_dir, converter, progress, policy
        )
        converter.load_converted(stage)  # strict: every key and shape, or WeightsError
        _write_manifest(stage, weight_set, origin, extracted)
        _swap_into_place(stage, target)
        succeeded = True
    except OSError as error:
        where = error.filename or target.parent
        raise WeightsError(f"{where}: cannot write the weights ({error.strerror or error})") from None
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        _clean_work_dir(work_dir, keep_partials=not succeeded)
    return target


def verify(weight_set: WeightSet = DEFAULT, *, converter: Converter | None = None) -> list[str]:
    """Re-check an install: SHA-256 against the manifest, then the strict layout.

    Returns one line per checkpoint; raises WeightsMissingError or WeightsError.
    """
    directory = cache.installed_dir(weight_set)
    if not cache.is_installed(weight_set):
        raise WeightsMissingError(
            f"{directory}: the {weight_set.name} weights are not installed "
            "(run `vidcolor download-weights`)"
        )
    manifest_file = cache.manifest_path(directory)
    try:
        manifest = json.loads(manifest_file.read_text())
        recorded = manifest["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise WeightsError(f"{manifest_file}: unreadable install manifest ({error})") from None

    digests = {}
    for kind in weight_set.checkpoints:
        path = cache.converted_path(directory, kind)
        expected = (recorded.get(path.name) or {}).get("sha256")
        if expected is None:
            raise WeightsError(f"{manifest_file}: no SHA-256 recorded for {path.name}")
        actual = sha256_file(path)
        if actual != expected:
            raise WeightsError(
                f"{path}: SHA-256 {actual[:16]}... differs from the install manifest's "
                f"{expected[:16]}... (reinstall with `vidcolor download-weights`)"
            )
        digests[kind] = actual

    loaded = (converter or devc_converter()).load_converted(directory)
    return [
        f"{kind}: {cache.converted_path(directory, kind).name}, {len(loaded[kind])} tensors, "
        f"sha256 {digests[kind][:16]}... ok"
        for kind in weight_set.checkpoints
    ]
