"""Fetch chosen members of a remote zip archive over HTTP, resumably and CRC-checked.

The official release is a 0.8 GB zip of which ~0.24 GB is needed. When the server honours
``Range`` we read the end of central directory from the archive's tail, parse the central
directory, and fetch only each needed member's local header and data. Otherwise we download the
whole archive and extract with :mod:`zipfile`. Either way every member's CRC-32 (and size) is
checked against the zip directory before anyone sees the file.

Compressed member bytes are kept in ``<work dir>/<member>.part`` next to a small JSON record of
the archive they came from, so a dropped connection, or a later run, continues where it stopped.

HTTP is stdlib ``urllib``; every request has a timeout and every retry loop a bound
(``FetchPolicy``). The zip format itself lives in ``zipformat``.
"""

from __future__ import annotations

import http.client
import json
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from vidcolor import __version__
from vidcolor.errors import DownloadError, WeightsError
from vidcolor.weights.registry import ZipMember
from vidcolor.weights.zipformat import (
    CHUNK_SIZE,
    LOCAL_HEADER_SIZE,
    TAIL_PROBE_SIZE,
    ByteTally,
    ExtractedMember,
    ProgressCallback,
    ZipEntry,
    check_member_pins,
    extract_members_from_file,
    inflate_checked,
    locate_central_directory,
    member_data_offset,
    member_filename,
    parse_central_directory,
)

USER_AGENT = f"vidcolor/{__version__} (weights download)"
RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})  # the server may answer on a retry


@dataclass(frozen=True)
class FetchPolicy:
    """How patient the HTTP client is. Every loop is bounded by ``attempts``."""

    timeout_s: float = 30.0  # per connect and per socket read
    attempts: int = 5  # tries per request, the first included
    backoff_s: float = 1.0  # sleep before try n+1 is backoff_s * n


DEFAULT_POLICY = FetchPolicy()


# ==============================================================================================
# HTTP with bounded retries
# ==============================================================================================


class _Transient(Exception):
    """A failure a retry may cure (dropped connection, timeout, 5xx)."""


T = TypeVar("T")


@contextmanager
def _classified_errors(url: str, policy: FetchPolicy) -> Iterator[None]:
    """Turn transport exceptions into _Transient (retry) or DownloadError (give up now)."""
    try:
        yield
    except urllib.error.HTTPError as error:
        error.close()
        cause = f"HTTP {error.code} {error.reason}".rstrip()
        if error.code in RETRYABLE_STATUS:
            raise _Transient(cause) from None
        raise DownloadError(f"{url}: {cause}") from None
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise _Transient(f"no answer within {policy.timeout_s:g} s") from None
        raise DownloadError(f"{url}: cannot connect ({error.reason})") from None
    except TimeoutError:
        raise _Transient(f"no data within {policy.timeout_s:g} s") from None
    except (http.client.HTTPException, ConnectionError) as error:
        raise _Transient(f"connection dropped ({type(error).__name__})") from None


def _with_retries(url: str, policy: FetchPolicy, operation: Callable[[], T]) -> T:
    last_cause = "no attempt made"
    for attempt in range(1, policy.attempts + 1):
        try:
            with _classified_errors(url, policy):
                return operation()
        except _Transient as transient:
            last_cause = str(transient)
        if attempt < policy.attempts:
            time.sleep(policy.backoff_s * attempt)
    tries = f"{policy.attempts} attempt" + ("s" if policy.attempts != 1 else "")
    raise DownloadError(f"{url}: {last_cause} (gave up after {tries})")


def _open(url: str, policy: FetchPolicy, byte_range: str | None = None) -> http.client.HTTPResponse:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if byte_range is not None:
        headers["Range"] = f"bytes={byte_range}"
    request = urllib.request.Request(url, headers=headers, method="GET")
    return urllib.request.urlopen(request, timeout=policy.timeout_s)  # noqa: S310 (scheme checked by caller)


def _read_exactly(response: http.client.HTTPResponse, length: int) -> bytes:
    data = response.read(length)
    if len(data) != length:
        raise http.client.IncompleteRead(data, length - len(data))
    return data


def _validator(response: http.client.HTTPResponse) -> str | None:
    """What identifies this version of the archive, to refuse resuming across versions."""
    return response.headers.get("ETag") or response.headers.get("Last-Modified")


def parse_content_range(value: str | None) -> tuple[int, int, int]:
    """``bytes START-END/TOTAL`` -> (start, end inclusive, total)."""
    try:
        unit, _, spec = (value or "").partition(" ")
        span, _, total = spec.partition("/")
        start, _, end = span.partition("-")
        if unit.strip().lower() != "bytes":
            raise ValueError
        return int(start), int(end), int(total)
    except ValueError:
        raise ValueError(f"unusable Content-Range header {value!r}") from None


def _content_range(url: str, response: http.client.HTTPResponse) -> tuple[int, int, int]:
    try:
        return parse_content_range(response.headers.get("Content-Range"))
    except ValueError as error:
        raise DownloadError(f"{url}: {error}") from None


def _read_range(url: str, policy: FetchPolicy, start: int, length: int) -> bytes:
    """``length`` bytes from ``start``; the server must answer 206 for exactly that span."""

    def attempt() -> bytes:
        with _open(url, policy, f"{start}-{start + length - 1}") as response:
            if response.status != 206:
                raise DownloadError(f"{url}: the server stopped honouring Range requests")
            got_start, got_end, _ = _content_range(url, response)
            if (got_start, got_end) != (start, start + length - 1):
                raise DownloadError(
                    f"{url}: asked for bytes {start}-{start + length - 1}, got {got_start}-{got_end}"
                )
            return _read_exactly(response, length)

    return _with_retries(url, policy, attempt)


# ==============================================================================================
# Resumable partial files
# ==============================================================================================


@dataclass(frozen=True)
class PartIdentity:
    """Which bytes a ``.part`` file holds; a mismatch means start over, never splice."""

    url: str
    archive_size: int | None
    validator: str | None
    member: str | None  # None: the whole archive
    crc32: int | None
    compressed_size: int | None


def _identity_path(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def resumable_bytes(part: Path, identity: PartIdentity, limit: int | None) -> int:
    """Bytes already in ``part`` that may be continued, discarding the file if it is stale."""
    record = _identity_path(part)
    try:
        stored = PartIdentity(**json.loads(record.read_text()))
        have = part.stat().st_size
    except (OSError, ValueError, TypeError):
        stored, have = None, 0
    if stored == identity and (limit is None or have <= limit):
        return have
    part.unlink(missing_ok=True)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(asdict(identity)))
    return 0


def discard_part(part: Path) -> None:
    part.unlink(missing_ok=True)
    _identity_path(part).unlink(missing_ok=True)


def _stream_to(
    response: http.client.HTTPResponse,
    part: Path,
    remaining: int | None,
    on_bytes: Callable[[int], None],
) -> None:
    """Append the response body to ``part`` as it arrives (flushed, so a drop keeps it)."""
    with open(part, "ab") as writer:
        while remaining is None or remaining > 0:
            want = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
            chunk = response.read(want)
            if not chunk:
                if remaining is None:
                    return
                raise http.client.IncompleteRead(b"", remaining)
            writer.write(chunk)
            writer.flush()
            on_bytes(len(chunk))
            if remaining is not None:
                remaining -= len(chunk)


# ==============================================================================================
# The range path
# ==============================================================================================


@dataclass(frozen=True)
class RemoteArchive:
    url: str
    size: int
    validator: str | None
    entries: dict[str, ZipEntry]


class RangesUnsupported(Exception):
    """The server answered a Range request with the whole body (200)."""


def read_remote_directory(url: str, policy: FetchPolicy = DEFAULT_POLICY) -> RemoteArchive:
    """Read a remote zip's central directory with Range requests (raises RangesUnsupported)."""

    def probe() -> tuple[bytes, int, str | None]:
        with _open(url, policy, f"-{TAIL_PROBE_SIZE}") as response:
            if response.status != 206:
                raise RangesUnsupported(url)
            start, end, total = _content_range(url, response)
            if end != total - 1:
                raise DownloadError(f"{url}: a suffix Range request did not return the archive's end")
            return _read_exactly(response, end - start + 1), total, _validator(response)

    tail, archive_size, validator = _with_retries(url, policy, probe)
    tail_offset = archive_size - len(tail)
    try:
        location = locate_central_directory(
            tail, tail_offset, lambda offset, length: _read_range(url, policy, offset, length)
        )
        start_in_tail = location.offset - tail_offset
        if start_in_tail >= 0:
            directory = tail[start_in_tail : start_in_tail + location.size]
        else:
            directory = _read_range(url, policy, location.offset, location.size)
        entries = parse_central_directory(directory, location.entry_count)
    except (ValueError, struct.error) as error:
        raise WeightsError(f"{url}: not a usable zip archive: {error}") from None
    return RemoteArchive(url=url, size=archive_size, validator=validator, entries=entries)


def _fetch_member_range(
    archive: RemoteArchive,
    entry: ZipEntry,
    part: Path,
    policy: FetchPolicy,
    on_bytes: Callable[[int], None],
) -> None:
    """Bring ``part`` to the member's full compressed bytes, resuming what is already there."""
    url = archive.url
    identity = PartIdentity(
        url=url,
        archive_size=archive.size,
        validator=archive.validator,
        member=entry.name,
        crc32=entry.crc32,
        compressed_size=entry.compressed_size,
    )
    have = resumable_bytes(part, identity, limit=entry.compressed_size)
    on_bytes(have)
    if have == entry.compressed_size:
        return
    header = _read_range(url, policy, entry.local_header_offset, LOCAL_HEADER_SIZE)
    try:
        data_start = member_data_offset(header, entry)
    except ValueError as error:
        raise WeightsError(f"{url}: {error}") from None
    data_end = data_start + entry.compressed_size  # exclusive
    if data_end > archive.size:
        raise WeightsError(f"{url}: member {entry.name!r} runs past the end of the archive")

    def attempt() -> None:
        offset = part.stat().st_size if part.exists() else 0
        if offset >= entry.compressed_size:
            return
        with _open(url, policy, f"{data_start + offset}-{data_end - 1}") as response:
            if response.status != 206:
                raise DownloadError(f"{url}: the server stopped honouring Range requests")
            got_start, _, _ = _content_range(url, response)
            if got_start != data_start + offset:
                raise DownloadError(
                    f"{url}: resumed at byte {got_start}, asked for {data_start + offset}"
                )
            _stream_to(response, part, entry.compressed_size - offset, on_bytes)

    _with_retries(url, policy, attempt)


def fetch_members_by_range(
    archive: RemoteArchive,
    members: Sequence[ZipMember],
    work_dir: Path,
    *,
    progress: ProgressCallback | None = None,
    policy: FetchPolicy = DEFAULT_POLICY,
) -> dict[str, ExtractedMember]:
    """Fetch and check ``members`` of a remote archive, by path_in_zip."""
    entries = []
    for member in members:
        entry = archive.entries.get(member.path_in_zip)
        if entry is None:
            raise WeightsError(
                f"{archive.url}: the archive has no member {member.path_in_zip!r}; "
                "not a release-shaped zip"
            )
        check_member_pins(entry, member, archive.url)
        entries.append(entry)

    tally = ByteTally(sum(entry.compressed_size for entry in entries), progress)
    extracted: dict[str, ExtractedMember] = {}
    for entry in entries:
        on_bytes = tally.member(entry.name.rsplit("/", 1)[-1])

        part = work_dir / (member_filename(entry.name) + ".part")
        _fetch_member_range(archive, entry, part, policy, on_bytes)
        destination = work_dir / member_filename(entry.name)
        try:
            inflate_checked(part, entry, destination, archive.url)
        except WeightsError:
            discard_part(part)  # corrupt bytes must not be resumed from
            raise
        extracted[entry.name] = ExtractedMember(destination, entry.crc32, entry.size)
    return extracted


# ==============================================================================================
# The whole-archive path, and local archives
# ==============================================================================================


def download_whole_archive(
    url: str,
    destination: Path,
    *,
    progress: ProgressCallback | None = None,
    policy: FetchPolicy = DEFAULT_POLICY,
) -> Path:
    """Download the archive to ``destination``, resuming with ``Range: bytes=N-`` when the
    server allows it and restarting from zero when it does not."""
    part = destination.with_name(destination.name + ".part")
    label = url.rsplit("/", 1)[-1] or url

    def attempt() -> None:
        have = part.stat().st_size if part.exists() else 0
        with _open(url, policy, f"{have}-" if have else None) as response:
            if response.status == 206:
                got_start, _, total = _content_range(url, response)
                if got_start != have:
                    raise DownloadError(f"{url}: resumed at byte {got_start}, asked for {have}")
            else:
                # A plain 200: the whole body follows, whatever we asked for.
                total = int(response.headers.get("Content-Length") or -1)
                if have:
                    discard_part(part)
                    have = 0
            identity = PartIdentity(
                url=url,
                archive_size=total if total >= 0 else None,
                validator=_validator(response),
                member=None,
                crc32=None,
                compressed_size=None,
            )
            if resumable_bytes(part, identity, limit=None) != have:
                # Our bytes came from another version of the archive (and are now discarded).
                raise _Transient("the archive changed on the server since the partial download")
            done = have

            def on_bytes(count: int) -> None:
                nonlocal done
                done += count
                if progress is not None:
                    progress(done, max(total, done), label)

            on_bytes(0)
            _stream_to(response, part, (total - have) if total >= 0 else None, on_bytes)

    _with_retries(url, policy, attempt)
    part.replace(destination)
    _identity_path(part).unlink(missing_ok=True)
    return destination


def fetch_members(
    url: str,
    members: Sequence[ZipMember],
    work_dir: Path,
    *,
    progress: ProgressCallback | None = None,
    policy: FetchPolicy = DEFAULT_POLICY,
) -> dict[str, ExtractedMember]:
    """Fetch ``members`` of the zip at ``url`` into ``work_dir``, checked, by path_in_zip.

    Range requests when the server honours them, else the whole archive (resumable).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        archive = read_remote_directory(url, policy)
    except RangesUnsupported:
        whole = download_whole_archive(url, work_dir / "archive.zip", progress=progress, policy=policy)
        try:
            return extract_members_from_file(whole, members, work_dir, source=url)
        finally:
            whole.unlink(missing_ok=True)
    return fetch_members_by_range(archive, members, work_dir, progress=progress, policy=policy)
