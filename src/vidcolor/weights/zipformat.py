"""The zip format, as far as fetching members needs it: directory parsing, checked extraction.

Pure functions over bytes and files; no network. ``zipfetch`` uses them on ranges read over
HTTP; local archives (``--from-file``, or a whole downloaded release) go through
:mod:`zipfile`, with the same checks and messages.

Zip structures follow PKWARE's APPNOTE.TXT (sections 4.3.7 local file header, 4.3.12 central
directory header, 4.3.14-4.3.16 zip64 and classic end records, 4.5.3 zip64 extra field).
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from vidcolor.errors import WeightsError
from vidcolor.weights.registry import ZipMember

ProgressCallback = Callable[[int, int, str], None]


class ByteTally:
    """Cumulative bytes over all members for one progress bar: ``tally(count, label)``."""

    def __init__(self, total: int, progress: ProgressCallback | None):
        self.total, self.progress, self.done = total, progress, 0

    def __call__(self, count: int, label: str) -> None:
        self.done += count
        if self.progress is not None:
            self.progress(self.done, self.total, label)

    def member(self, label: str) -> Callable[[int], None]:
        """The ``on_bytes(count)`` callback for one member."""
        return lambda count: self(count, label)
"""``progress(done_bytes, total_bytes, label)``; called often, must be cheap."""

CHUNK_SIZE = 1 << 20  # 1 MiB: reads, writes and CRC updates go in chunks of this size

# --- APPNOTE.TXT constants ------------------------------------------------------------------
SIG_LOCAL_HEADER = b"PK\x03\x04"
SIG_CENTRAL_HEADER = b"PK\x01\x02"
SIG_EOCD = b"PK\x05\x06"
SIG_ZIP64_LOCATOR = b"PK\x06\x07"
SIG_ZIP64_EOCD = b"PK\x06\x06"

LOCAL_HEADER_SIZE = 30
CENTRAL_HEADER_SIZE = 46
EOCD_SIZE = 22
EOCD_MAX_COMMENT = 0xFFFF
ZIP64_LOCATOR_SIZE = 20
ZIP64_EOCD_SIZE = 56  # without its (optional) extensible data
# The EOCD sits within the last 22 + 65535 bytes (its comment is at most 64 KiB); the zip64
# locator and, usually, the zip64 end record sit right before it.
TAIL_PROBE_SIZE = EOCD_SIZE + EOCD_MAX_COMMENT + ZIP64_LOCATOR_SIZE + ZIP64_EOCD_SIZE

ZIP64_EXTRA_ID = 0x0001
ZIP64_MARKER_16 = 0xFFFF
ZIP64_MARKER_32 = 0xFFFFFFFF
FLAG_ENCRYPTED = 0x0001
METHOD_STORED = 0
METHOD_DEFLATED = 8
RAW_DEFLATE_WBITS = -15  # zlib: raw deflate stream, no zlib header (zip's method 8)


@dataclass(frozen=True)
class ZipEntry:
    """A member as the central directory describes it."""

    name: str
    method: int
    flags: int
    crc32: int
    compressed_size: int
    size: int
    local_header_offset: int


@dataclass(frozen=True)
class ExtractedMember:
    """A member written to disk after its size and CRC-32 matched the zip directory."""

    path: Path
    crc32: int
    size: int


@dataclass(frozen=True)
class CentralDirectoryLocation:
    offset: int
    size: int
    entry_count: int


def locate_central_directory(
    tail: bytes, tail_offset: int, read_at: Callable[[int, int], bytes]
) -> CentralDirectoryLocation:
    """Find the central directory from the archive's last bytes.

    ``tail`` holds the archive from ``tail_offset`` to its end. ``read_at(offset, length)``
    reads elsewhere in the archive; it is only called for a zip64 end record outside ``tail``.
    """
    eocd_at = tail.rfind(SIG_EOCD)
    while eocd_at >= 0:
        if eocd_at + EOCD_SIZE <= len(tail):
            comment_length = struct.unpack_from("<H", tail, eocd_at + 20)[0]
            if eocd_at + EOCD_SIZE + comment_length <= len(tail):
                break
        eocd_at = tail.rfind(SIG_EOCD, 0, eocd_at)
    if eocd_at < 0:
        raise ValueError(
            f"no end of central directory record in the last {len(tail)} bytes "
            "(not a zip archive, or truncated)"
        )
    (_, disk, cd_disk, _, entry_count, cd_size, cd_offset, _) = struct.unpack_from(
        "<4s4H2LH", tail, eocd_at
    )

    locator_at = eocd_at - ZIP64_LOCATOR_SIZE
    if locator_at >= 0 and tail[locator_at : locator_at + 4] == SIG_ZIP64_LOCATOR:
        _, _, zip64_eocd_offset, _ = struct.unpack_from("<4sLQL", tail, locator_at)
        start_in_tail = zip64_eocd_offset - tail_offset
        if 0 <= start_in_tail and start_in_tail + ZIP64_EOCD_SIZE <= len(tail):
            record = tail[start_in_tail : start_in_tail + ZIP64_EOCD_SIZE]
        else:
            record = read_at(zip64_eocd_offset, ZIP64_EOCD_SIZE)
        if len(record) != ZIP64_EOCD_SIZE or record[:4] != SIG_ZIP64_EOCD:
            raise ValueError(f"bad zip64 end of central directory record at byte {zip64_eocd_offset}")
        # A zip64 writer may set every classic field to its marker: read them all from here.
        (_, _, _, _, disk, cd_disk, _, entry_count, cd_size, cd_offset) = struct.unpack(
            "<4sQ2H2L4Q", record
        )
    elif ZIP64_MARKER_32 in (cd_size, cd_offset) or entry_count == ZIP64_MARKER_16:
        raise ValueError("zip64 markers in the end record but no zip64 locator")
    if disk != 0 or cd_disk != 0:
        raise ValueError("multi-volume zip archives are not supported")

    cd_end = cd_offset + cd_size
    archive_cd_limit = tail_offset + eocd_at  # the directory ends before the end records
    if cd_end > archive_cd_limit:
        raise ValueError(
            f"central directory [{cd_offset}, {cd_end}) overlaps the end records at {archive_cd_limit}"
        )
    return CentralDirectoryLocation(offset=cd_offset, size=cd_size, entry_count=entry_count)


def _apply_zip64_extra(
    extra: bytes, size: int, compressed_size: int, offset: int
) -> tuple[int, int, int]:
    """Replace 0xFFFFFFFF fields by their 64-bit values from the zip64 extra field, in the
    order APPNOTE 4.5.3 fixes: size, compressed size, local header offset."""
    position = 0
    while position + 4 <= len(extra):
        header_id, data_size = struct.unpack_from("<HH", extra, position)
        data = extra[position + 4 : position + 4 + data_size]
        position += 4 + data_size
        if header_id != ZIP64_EXTRA_ID:
            continue
        values = list(struct.unpack_from(f"<{len(data) // 8}Q", data))
        fields = [size, compressed_size, offset]
        for index, value in enumerate(fields):
            if value == ZIP64_MARKER_32:
                if not values:
                    raise ValueError("zip64 extra field is shorter than its markers require")
                fields[index] = values.pop(0)
        return fields[0], fields[1], fields[2]
    if ZIP64_MARKER_32 in (size, compressed_size, offset):
        raise ValueError("zip64 markers in a central header without a zip64 extra field")
    return size, compressed_size, offset


def parse_central_directory(data: bytes, entry_count: int) -> dict[str, ZipEntry]:
    """The entries of a central directory, by member name."""
    entries: dict[str, ZipEntry] = {}
    position = 0
    for index in range(entry_count):
        if data[position : position + 4] != SIG_CENTRAL_HEADER:
            raise ValueError(f"central directory entry {index} has a bad signature")
        (
            _,
            _,
            _,
            flags,
            method,
            _,
            _,
            crc32,
            compressed_size,
            size,
            name_length,
            extra_length,
            comment_length,
            _,
            _,
            _,
            local_header_offset,
        ) = struct.unpack_from("<4s4H2H3L5H2L", data, position)
        name_start = position + CENTRAL_HEADER_SIZE
        raw_name = data[name_start : name_start + name_length]
        extra = data[name_start + name_length : name_start + name_length + extra_length]
        # Bit 11: the name is UTF-8; otherwise APPNOTE says IBM code page 437.
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437")
        size, compressed_size, local_header_offset = _apply_zip64_extra(
            extra, size, compressed_size, local_header_offset
        )
        entries[name] = ZipEntry(
            name=name,
            method=method,
            flags=flags,
            crc32=crc32,
            compressed_size=compressed_size,
            size=size,
            local_header_offset=local_header_offset,
        )
        position = name_start + name_length + extra_length + comment_length
        if position > len(data):
            raise ValueError(f"central directory entry {index} runs past the directory's end")
    return entries


def member_data_offset(local_header: bytes, entry: ZipEntry) -> int:
    """Where ``entry``'s compressed bytes start, from its 30-byte local header.

    The local extra field may differ in length from the central one, so it must be read here.
    """
    if len(local_header) < LOCAL_HEADER_SIZE or local_header[:4] != SIG_LOCAL_HEADER:
        raise ValueError(
            f"no local file header for {entry.name!r} at byte {entry.local_header_offset}"
        )
    name_length, extra_length = struct.unpack_from("<HH", local_header, 26)
    return entry.local_header_offset + LOCAL_HEADER_SIZE + name_length + extra_length


def check_member_pins(entry: ZipEntry, member: ZipMember, source: str) -> None:
    """Compare the registry's known size/CRC with the zip directory before fetching anything."""
    if entry.flags & FLAG_ENCRYPTED:
        raise WeightsError(f"{source}: member {entry.name!r} is encrypted; cannot extract it")
    if entry.method not in (METHOD_STORED, METHOD_DEFLATED):
        raise WeightsError(
            f"{source}: member {entry.name!r} uses compression method {entry.method} "
            "(only stored and deflate are supported)"
        )
    if member.crc32 is not None and member.crc32 != entry.crc32:
        raise WeightsError(
            f"{source}: member {entry.name!r} has CRC-32 {entry.crc32:08x}, the registry "
            f"expects {member.crc32:08x}: not the expected release"
        )
    if member.size is not None and member.size != entry.size:
        raise WeightsError(
            f"{source}: member {entry.name!r} has {entry.size} bytes, the registry expects "
            f"{member.size}: not the expected release"
        )


def _inflated_chunks(reader, method: int) -> Iterator[bytes]:
    """The uncompressed bytes of a stored or deflated stream, at most CHUNK_SIZE at a time
    (bounded output per call, so a hostile stream cannot balloon memory)."""
    if method == METHOD_STORED:
        while chunk := reader.read(CHUNK_SIZE):
            yield chunk
        return
    decompressor = zlib.decompressobj(RAW_DEFLATE_WBITS)
    while chunk := reader.read(CHUNK_SIZE):
        data = decompressor.decompress(chunk, CHUNK_SIZE)
        while data:
            yield data
            data = decompressor.decompress(decompressor.unconsumed_tail, CHUNK_SIZE)
    if rest := decompressor.flush():
        yield rest
    if not decompressor.eof:
        raise ValueError("its deflate stream ends early")


def inflate_checked(compressed: Path, entry: ZipEntry, destination: Path, source: str) -> None:
    """Decompress ``compressed`` into ``destination`` chunk by chunk, checking size and CRC-32.

    Writes to a temporary name first: a corrupt member never appears at ``destination``.
    """
    scratch = destination.with_name(destination.name + ".inflating")
    crc = 0
    produced = 0
    try:
        with open(compressed, "rb") as reader, open(scratch, "wb") as writer:
            for data in _inflated_chunks(reader, entry.method):
                produced += len(data)
                if produced > entry.size:
                    raise ValueError(f"it inflates past the {entry.size} bytes the zip directory says")
                crc = zlib.crc32(data, crc)
                writer.write(data)
        if produced != entry.size:
            raise ValueError(f"it inflates to {produced} bytes, the zip directory says {entry.size}")
        if crc != entry.crc32:
            raise ValueError(f"CRC-32 {crc:08x}, the zip directory says {entry.crc32:08x}")
        scratch.replace(destination)
    except (ValueError, zlib.error) as error:
        raise WeightsError(f"{source}: member {entry.name!r} is corrupt: {error}") from None
    finally:
        scratch.unlink(missing_ok=True)


def member_filename(path_in_zip: str) -> str:
    """A flat, safe file name for a member inside the work directory."""
    return path_in_zip.strip("/").replace("/", "__").replace("\\", "__")


def _entry_from_info(info: zipfile.ZipInfo) -> ZipEntry:
    return ZipEntry(
        name=info.filename,
        method=info.compress_type,
        flags=info.flag_bits,
        crc32=info.CRC,
        compressed_size=info.compress_size,
        size=info.file_size,
        local_header_offset=info.header_offset,
    )


def _extract_one(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    destination: Path,
    source: str,
    on_bytes: Callable[[int], None],
) -> None:
    """Stream one member to ``destination`` with our own CRC-32 (zipfile also checks it, but
    raises its own message only at the end of the read); a corrupt member never lands there."""
    scratch = destination.with_name(destination.name + ".extracting")
    crc = 0
    try:
        with archive.open(info) as reader, open(scratch, "wb") as writer:
            while chunk := reader.read(CHUNK_SIZE):
                crc = zlib.crc32(chunk, crc)
                writer.write(chunk)
                on_bytes(len(chunk))
        if crc != info.CRC:
            raise zipfile.BadZipFile(f"CRC-32 {crc:08x}, the zip directory says {info.CRC:08x}")
        scratch.replace(destination)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise WeightsError(f"{source}: member {info.filename!r} is corrupt: {error}") from None
    finally:
        scratch.unlink(missing_ok=True)


def extract_members_from_file(
    zip_path: Path,
    members: Sequence[ZipMember],
    work_dir: Path,
    *,
    source: str | None = None,
    progress: ProgressCallback | None = None,
) -> dict[str, ExtractedMember]:
    """Extract and check ``members`` of a local zip (read with :mod:`zipfile`), by path_in_zip."""
    source = source or str(zip_path)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, EOFError) as error:
        raise WeightsError(f"{source}: not a zip archive, or truncated ({error})") from None
    with archive:
        infos = []
        for member in members:
            try:
                info = archive.getinfo(member.path_in_zip)
            except KeyError:
                raise WeightsError(
                    f"{source}: the archive has no member {member.path_in_zip!r}; "
                    "not a release-shaped zip"
                ) from None
            check_member_pins(_entry_from_info(info), member, source)
            infos.append(info)

        tally = ByteTally(sum(info.file_size for info in infos), progress)
        extracted: dict[str, ExtractedMember] = {}
        for info in infos:
            on_bytes = tally.member(info.filename.rsplit("/", 1)[-1])

            destination = work_dir / member_filename(info.filename)
            _extract_one(archive, info, destination, source, on_bytes)
            extracted[info.filename] = ExtractedMember(destination, info.CRC, info.file_size)
    return extracted
