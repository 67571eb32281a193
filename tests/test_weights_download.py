"""Weight download: registry walk, range requests, fallback, resume, CRC, atomic install.

Every server is local (tests/fake_servers.py). Most tests use tiny checkpoints with the real
member names and a converter for their layout; one test runs the full official layout (seeded
weights, ~240 MB, conftest's session fixture) through the real converter.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pathlib
import struct
import zipfile
import zlib

import pytest
import torch
from fake_servers import (
    UNNEEDED_MEMBER,
    BlobServer,
    bypass_proxies,
    checkpoint_bytes,
    release_zip,
    tiny_converter,
    tiny_state_dict,
)
from safetensors.torch import load_file

from vidcolor.errors import DownloadError, OptionError, WeightsError, WeightsMissingError
from vidcolor.weights import cache, download, registry, zipfetch, zipformat
from vidcolor.weights.zipfetch import FetchPolicy

FAST = FetchPolicy(timeout_s=2.0, attempts=3, backoff_s=0.01)
UNREACHABLE = "http://127.0.0.1:9/never-used.zip"  # port 9 (discard): nothing listens
DEFLATED_MEMBER = "checkpoints/video_moredata_l1/colornet_iter_76000.pth"
STORED_MEMBER = "data/vgg19_conv.pth"


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _local_servers_bypass_proxies(monkeypatch):
    bypass_proxies(monkeypatch)


@pytest.fixture
def home(tmp_path, monkeypatch):
    root = tmp_path / "vidcolor-home"
    monkeypatch.setenv("VIDCOLOR_HOME", str(root))
    return root


@pytest.fixture(scope="module")
def release():
    """Tiny release: the three needed members (one deflated) and a 1 MiB unneeded one."""
    states = {m.checkpoint: tiny_state_dict(m.checkpoint) for m in registry.DEVC_RELEASE.members}
    members = {m.path_in_zip: checkpoint_bytes(states[m.checkpoint]) for m in registry.DEVC_RELEASE.members}
    members[UNNEEDED_MEMBER] = bytes(range(256)) * 4096
    blob = release_zip(members, deflated={DEFLATED_MEMBER})
    infos = {info.filename: info for info in zipfile.ZipFile(io.BytesIO(blob)).infolist()}
    return {"blob": blob, "states": states, "infos": infos}


def tiny_set(*urls: str, **changes) -> registry.WeightSet:
    return dataclasses.replace(registry.DEVC_RELEASE, name="tiny", urls=urls or (UNREACHABLE,), **changes)


def install(weight_set, **kwargs):
    kwargs.setdefault("policy", FAST)
    return download.install(weight_set=weight_set, converter=tiny_converter(), **kwargs)


def assert_installed_equals(weight_set, states) -> None:
    directory = cache.installed_dir(weight_set)
    for kind, state in states.items():
        loaded = load_file(str(directory / f"{kind}.safetensors"))
        assert loaded.keys() == state.keys()
        for key, tensor in state.items():
            assert torch.equal(loaded[key], tensor), (kind, key)


def assert_nothing_installed(weight_set) -> None:
    directory = cache.installed_dir(weight_set)
    assert not directory.exists()
    assert not cache.is_installed(weight_set)
    leftovers = [p.name for p in directory.parent.iterdir()] if directory.parent.exists() else []
    assert leftovers == [], f"staging directories left behind: {leftovers}"


def needed_bytes(release) -> int:
    """Bytes the range path must transfer: the tail probe, 3 local headers, 3 members' data."""
    members = [release["infos"][m.path_in_zip] for m in registry.DEVC_RELEASE.members]
    tail = min(zipformat.TAIL_PROBE_SIZE, len(release["blob"]))
    return tail + len(members) * zipformat.LOCAL_HEADER_SIZE + sum(i.compress_size for i in members)


def corrupt_member_data(blob: bytes, info: zipfile.ZipInfo) -> bytes:
    """Flip one byte in the middle of a member's data, leaving every header intact."""
    name_length, extra_length = struct.unpack_from("<HH", blob, info.header_offset + 26)
    data_start = info.header_offset + 30 + name_length + extra_length
    position = data_start + info.compress_size // 2
    return blob[:position] + bytes([blob[position] ^ 0xFF]) + blob[position + 1 :]


# --- the three ways in ------------------------------------------------------------------------


def test_range_path_fetches_only_the_needed_members(home, release):
    with BlobServer(release["blob"]) as server:
        weight_set = tiny_set(server.url)
        progress_calls = []
        path = install(weight_set, progress=lambda *call: progress_calls.append(call))

    assert path == cache.installed_dir(weight_set) == home / "weights" / "tiny"
    assert_installed_equals(weight_set, release["states"])
    gets = server.requests("GET")
    assert all(r.range_header and r.status == 206 for r in gets)
    assert server.body_bytes == needed_bytes(release) < len(release["blob"]) // 2
    # The manifest records the zip directory's facts, as zipfile reads them.
    manifest = json.loads(cache.manifest_path(path).read_text())
    assert manifest["source"] == server.url
    for member in registry.DEVC_RELEASE.members:
        info = release["infos"][member.path_in_zip]
        assert manifest["members"][member.path_in_zip] == {"crc32": f"{info.CRC:08x}", "size": info.file_size}
    # Progress: cumulative, non-decreasing, ending at the total of compressed member bytes.
    dones = [done for done, _, _ in progress_calls]
    assert dones == sorted(dones) and progress_calls[-1][0] == progress_calls[-1][1]
    # Success cleans the downloads dir; verify() agrees with the install.
    assert not cache.downloads_dir(weight_set).exists()
    assert len(download.verify(weight_set, converter=tiny_converter())) == 3


def test_range_requests_survive_a_redirect(home, release):
    with BlobServer(release["blob"], redirect_from="releases/download/v1.0/release.zip") as server:
        weight_set = tiny_set(f"{server.base_url}/releases/download/v1.0/release.zip")
        install(weight_set)
    assert_installed_equals(weight_set, release["states"])
    redirected = [r for r in server.requests() if r.status == 302]
    served = [r for r in server.requests() if r.path == f"/{server.name}"]
    assert len(redirected) == len(served) > 0
    assert all(r.status == 206 and r.range_header for r in served)
    assert server.body_bytes == needed_bytes(release)


def test_source_url_overrides_the_registry(home, release):
    with BlobServer(release["blob"]) as server:
        weight_set = tiny_set(UNREACHABLE)
        install(weight_set, source=server.url)
    assert_installed_equals(weight_set, release["states"])


def test_next_mirror_is_tried_when_the_first_fails(home, release):
    with BlobServer(release["blob"], status=404) as broken, BlobServer(release["blob"]) as good:
        install(tiny_set(broken.url, good.url))
    assert_installed_equals(tiny_set(), release["states"])


@pytest.mark.parametrize("suffix_ranges", [False, True], ids=["no-range-at-all", "no-suffix-range"])
def test_whole_archive_fallback(home, release, suffix_ranges):
    # ranges=False: every Range header ignored. suffix_ranges=False: only bytes=-N ignored.
    with BlobServer(release["blob"], ranges=not suffix_ranges, suffix_ranges=suffix_ranges) as server:
        weight_set = tiny_set(server.url)
        install(weight_set)
    assert_installed_equals(weight_set, release["states"])
    plain = [r for r in server.requests("GET") if r.range_header is None]
    assert len(plain) == 1 and plain[0].body_bytes == len(release["blob"])


def test_from_file_needs_no_network(home, release, tmp_path):
    archive = tmp_path / "colorization_checkpoint.zip"
    archive.write_bytes(release["blob"])
    weight_set = tiny_set()
    install(weight_set, from_file=archive)
    assert_installed_equals(weight_set, release["states"])
    assert json.loads(cache.manifest_path(cache.installed_dir(weight_set)).read_text())["source"] == str(archive)
    assert archive.read_bytes() == release["blob"]


# --- resume -----------------------------------------------------------------------------------


def test_dropped_connection_is_resumed_not_restarted(home, release):
    cut = 100_000  # beyond the 64 KiB tail, inside the first member bigger than that
    with BlobServer(release["blob"], drop_once_after=cut) as server:
        weight_set = tiny_set(server.url)
        install(weight_set)
    assert_installed_equals(weight_set, release["states"])
    # Every byte crossed the wire once: the dropped request's bytes were kept and continued.
    assert server.body_bytes == needed_bytes(release)
    cut_request = next(r for r in server.requests() if r.body_bytes == cut)
    cut_start = int(cut_request.range_header.split("=")[1].split("-")[0])
    assert any(r.range_header.startswith(f"bytes={cut_start + cut}-") for r in server.requests())


def test_partial_download_survives_a_failed_run(home, release):
    cut = 100_000
    with BlobServer(release["blob"], drop_once_after=cut) as server:
        weight_set = tiny_set(server.url)
        with pytest.raises(DownloadError, match="connection dropped"):
            install(weight_set, policy=FetchPolicy(timeout_s=2, attempts=1, backoff_s=0))
        assert_nothing_installed(weight_set)
        parts = list(cache.downloads_dir(weight_set).glob("*.part"))
        assert [p.stat().st_size for p in parts] == [cut]

        first_run_bytes = server.body_bytes
        install(weight_set)  # same URL, same archive: the part is continued
        second_run_bytes = server.body_bytes - first_run_bytes
    assert_installed_equals(weight_set, release["states"])
    # The second run re-reads the directory (tail) and the cut member's local header only.
    tail = zipformat.TAIL_PROBE_SIZE
    assert second_run_bytes == needed_bytes(release) - cut
    assert first_run_bytes == tail + zipformat.LOCAL_HEADER_SIZE + cut


def test_whole_archive_download_resumes_with_open_ended_range(home, release):
    cut = 700_000
    # Request 1 is the suffix probe (answered 200, abandoned); request 2 the full GET, cut.
    with BlobServer(release["blob"], suffix_ranges=False, drop_once_after=cut, drop_request=2) as server:
        weight_set = tiny_set(server.url)
        install(weight_set)
    assert_installed_equals(weight_set, release["states"])
    resumed = [r for r in server.requests() if r.range_header == f"bytes={cut}-"]
    assert len(resumed) == 1 and resumed[0].status == 206
    assert resumed[0].body_bytes == len(release["blob"]) - cut


def test_server_without_ranges_restarts_after_a_drop(home, release):
    cut = 700_000
    with BlobServer(release["blob"], ranges=False, drop_once_after=cut, drop_request=2) as server:
        weight_set = tiny_set(server.url)
        install(weight_set)
    assert_installed_equals(weight_set, release["states"])
    probe, cut_off, restart = server.requests()
    assert cut_off.body_bytes == cut
    assert restart.range_header == f"bytes={cut}-" and restart.status == 200
    assert restart.body_bytes == len(release["blob"])


# --- failures install nothing -----------------------------------------------------------------


@pytest.mark.parametrize("member", [STORED_MEMBER, DEFLATED_MEMBER], ids=["stored", "deflated"])
@pytest.mark.parametrize("way", ["range", "whole-archive", "from-file"])
def test_bad_crc_installs_nothing_and_keeps_the_old_install(home, release, tmp_path, way, member):
    weight_set = tiny_set()
    install(weight_set, from_file=_write(tmp_path / "good.zip", release["blob"]))
    before = cache.manifest_path(cache.installed_dir(weight_set)).read_text()

    bad = corrupt_member_data(release["blob"], release["infos"][member])
    with pytest.raises(WeightsError) as raised:
        if way == "from-file":
            install(weight_set, from_file=_write(tmp_path / "bad.zip", bad))
        else:
            with BlobServer(bad, ranges=(way == "range")) as server:
                install(weight_set, source=server.url)
    message = str(raised.value)
    assert "\n" not in message and member in message and "corrupt" in message
    if member == STORED_MEMBER:  # a flipped stored byte leaves only the CRC to notice
        assert "CRC" in message
    # The previous install is untouched and nothing else was left behind.
    assert cache.manifest_path(cache.installed_dir(weight_set)).read_text() == before
    assert download.verify(weight_set, converter=tiny_converter())
    assert sorted(p.name for p in cache.installed_dir(weight_set).parent.iterdir()) == ["tiny"]
    # The corrupt member's partial bytes are discarded (good members' parts may stay to resume).
    assert not list(cache.downloads_dir(weight_set).glob(zipformat.member_filename(member) + "*"))


def _write(path, data):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("status, attempts", [(404, 1), (500, FAST.attempts)])
def test_http_error_is_one_line_with_url_and_hint(home, release, status, attempts):
    with BlobServer(release["blob"], status=status) as server:
        weight_set = tiny_set(server.url)
        with pytest.raises(DownloadError) as raised:
            install(weight_set)
    message = str(raised.value)
    assert "\n" not in message
    assert server.url in message and f"HTTP {status}" in message
    assert "--from-file" in message
    assert len(server.requests()) == attempts  # 5xx retried a bounded number of times, 404 not
    assert_nothing_installed(weight_set)


def test_slow_server_times_out_with_a_clear_message(home, release):
    with BlobServer(release["blob"], delay_s=0.6) as server:
        weight_set = tiny_set(server.url)
        with pytest.raises(DownloadError, match=r"no data within 0\.2 s \(gave up after 2 attempts\)"):
            install(weight_set, policy=FetchPolicy(timeout_s=0.2, attempts=2, backoff_s=0))
    assert_nothing_installed(weight_set)


def test_offline_is_a_download_error(home):
    with pytest.raises(DownloadError, match="cannot connect.*--from-file"):
        install(tiny_set(UNREACHABLE))


@pytest.mark.parametrize("way", ["from-file", "http"])
def test_truncated_zip_is_refused(home, release, tmp_path, way):
    truncated = release["blob"][: len(release["blob"]) // 2]
    weight_set = tiny_set()
    with pytest.raises(WeightsError, match="truncated"):
        if way == "from-file":
            install(weight_set, from_file=_write(tmp_path / "cut.zip", truncated))
        else:
            with BlobServer(truncated) as server:
                install(weight_set, source=server.url)
    assert_nothing_installed(weight_set)


def test_archive_without_a_needed_member_is_refused(home, release, tmp_path):
    members = {name: b"x" for name in release["infos"] if name != DEFLATED_MEMBER}
    with BlobServer(release_zip(members)) as server:
        weight_set = tiny_set(server.url)
        with pytest.raises(WeightsError, match=f"no member '{DEFLATED_MEMBER}'"):
            install(weight_set)
    assert_nothing_installed(weight_set)


def test_wrong_layout_is_refused(home, release, tmp_path):
    members = {name: zipfile.ZipFile(io.BytesIO(release["blob"])).read(name) for name in release["infos"]}
    wrong = dict(tiny_state_dict("colornet"), extra=torch.zeros(1))
    members[DEFLATED_MEMBER] = checkpoint_bytes(wrong)
    weight_set = tiny_set()
    with pytest.raises(WeightsError, match="keys"):
        install(weight_set, from_file=_write(tmp_path / "wrong.zip", release_zip(members)))
    assert_nothing_installed(weight_set)


class _RunsCodeWhenUnpickled:
    """A pickle payload that would create ``marker`` if anything unpickled it unrestricted."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


@pytest.mark.parametrize("payload", ["code-running pickle", "wrong keys"])
def test_real_converter_refuses_hostile_or_foreign_checkpoints(home, release, tmp_path, payload):
    marker = tmp_path / "code-was-run"
    members = {name: zipfile.ZipFile(io.BytesIO(release["blob"])).read(name) for name in release["infos"]}
    first = registry.DEVC_RELEASE.members[0].path_in_zip  # converted first
    if payload == "code-running pickle":
        members[first] = checkpoint_bytes({"theta.weight": _RunsCodeWhenUnpickled(marker)})
        expected = "refused to load"
    else:
        members[first] = checkpoint_bytes({"theta.weight": torch.zeros(1)})
        expected = "missing key 'layer2_1.1.weight'"
    weight_set = dataclasses.replace(registry.DEVC_RELEASE, name="hostile")
    with pytest.raises(WeightsError, match=expected) as raised:
        download.install(from_file=_write(tmp_path / "r.zip", release_zip(members)), weight_set=weight_set)
    message = str(raised.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'r.zip'} ({first}): ")
    assert not marker.exists()
    assert_nothing_installed(weight_set)


def test_rich_progress_draws_bytes_for_the_member():
    from rich.console import Console

    from vidcolor.weights.progress import rich_progress

    screen = io.StringIO()
    with rich_progress(Console(file=screen, width=120)) as progress:
        progress(0, 2_000_000, "colornet_iter_76000.pth")
        progress(2_000_000, 2_000_000, "colornet_iter_76000.pth")
    assert "colornet_iter_76000.pth" in screen.getvalue() and "2.0/2.0 MB" in screen.getvalue()


def test_registry_pins_are_checked_before_fetching_data(home, release):
    info = release["infos"][STORED_MEMBER]
    pinned = tuple(
        dataclasses.replace(m, crc32=info.CRC ^ 1) if m.path_in_zip == STORED_MEMBER else m
        for m in registry.DEVC_RELEASE.members
    )
    with BlobServer(release["blob"]) as server:
        weight_set = tiny_set(server.url, members=pinned)
        with pytest.raises(WeightsError, match="registry expects"):
            install(weight_set)
    assert server.body_bytes == zipformat.TAIL_PROBE_SIZE  # only the directory was read
    assert_nothing_installed(weight_set)


def test_bad_arguments_are_usage_errors(home, tmp_path):
    with pytest.raises(OptionError, match="ftp://"):
        install(tiny_set(), source="ftp://example.org/x.zip")
    with pytest.raises(OptionError, match="not both"):
        install(tiny_set(), source="https://example.org/x.zip", from_file=tmp_path / "x.zip")
    with pytest.raises(OptionError, match="no such file"):
        install(tiny_set(), from_file=tmp_path / "missing.zip")


# --- verify -----------------------------------------------------------------------------------


def test_verify_detects_a_changed_or_missing_file(home, release, tmp_path):
    weight_set = tiny_set()
    with pytest.raises(WeightsMissingError, match="download-weights"):
        download.verify(weight_set, converter=tiny_converter())
    install(weight_set, from_file=_write(tmp_path / "r.zip", release["blob"]))
    target = cache.converted_path(cache.installed_dir(weight_set), "colornet")
    data = bytearray(target.read_bytes())
    data[-1] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="colornet.safetensors: SHA-256"):
        download.verify(weight_set, converter=tiny_converter())
    target.unlink()
    with pytest.raises(WeightsMissingError):
        download.verify(weight_set, converter=tiny_converter())


# --- registry ---------------------------------------------------------------------------------


def test_registry_declares_the_official_release():
    assert registry.get("devc") is registry.DEFAULT is registry.DEVC_RELEASE
    assert registry.DEFAULT.urls[0].endswith("/releases/download/v1.0/colorization_checkpoint.zip")
    assert set(registry.DEFAULT.checkpoints) == {"vgg19_conv", "nonlocal_net", "colornet"}
    assert UNNEEDED_MEMBER not in {m.path_in_zip for m in registry.DEFAULT.members}
    with pytest.raises(OptionError, match="unknown weight set 'nope' \\(known: devc\\)"):
        registry.get("nope")
    with pytest.raises(ValueError, match="twice"):
        tiny_set(members=registry.DEFAULT.members[:1] * 2)


# --- cache location ---------------------------------------------------------------------------


def test_weights_home_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.delenv("VIDCOLOR_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert cache.weights_home() == tmp_path / "user" / ".cache" / "vidcolor"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG spec: must be absolute
    assert cache.weights_home() == tmp_path / "user" / ".cache" / "vidcolor"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.weights_home() == tmp_path / "xdg" / "vidcolor"
    monkeypatch.setenv("VIDCOLOR_HOME", str(tmp_path / "explicit"))
    assert cache.weights_home() == tmp_path / "explicit"
    assert cache.installed_dir() == tmp_path / "explicit" / "weights" / "devc"


# --- the zip parser against zipfile -----------------------------------------------------------


def _directory_from_blob(blob: bytes) -> dict[str, zipformat.ZipEntry]:
    tail_offset = max(0, len(blob) - zipformat.TAIL_PROBE_SIZE)
    location = zipformat.locate_central_directory(
        blob[tail_offset:], tail_offset, lambda offset, length: blob[offset : offset + length]
    )
    data = blob[location.offset : location.offset + location.size]
    return zipformat.parse_central_directory(data, location.entry_count)


def _assert_matches_zipfile(blob: bytes) -> None:
    entries = _directory_from_blob(blob)
    infos = zipfile.ZipFile(io.BytesIO(blob)).infolist()
    assert list(entries) == [info.filename for info in infos]
    for info in infos:
        entry = entries[info.filename]
        assert (entry.crc32, entry.size, entry.compressed_size) == (info.CRC, info.file_size, info.compress_size)
        assert (entry.method, entry.local_header_offset) == (info.compress_type, info.header_offset)
        header = blob[entry.local_header_offset : entry.local_header_offset + zipformat.LOCAL_HEADER_SIZE]
        start = zipformat.member_data_offset(header, entry)
        raw = blob[start : start + entry.compressed_size]
        payload = zlib.decompress(raw, -15) if entry.method == zipfile.ZIP_DEFLATED else raw
        assert payload == zipfile.ZipFile(io.BytesIO(blob)).read(info.filename)


def test_parser_matches_zipfile_with_a_maximal_comment():
    members = {"a/one.bin": bytes(range(256)) * 300, "b/two.bin": b"two" * 10, "é-utf8.bin": b"u"}
    _assert_matches_zipfile(release_zip(members, deflated={"a/one.bin"}, comment=b"c" * 0xFFFF))


def test_parser_matches_zipfile_on_zip64_records(monkeypatch):
    # zipfile writes zip64 extras and end records once values pass ZIP64_LIMIT; lowering it
    # produces a small zip with every zip64 structure the 0.8 GB release could need.
    monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
    members = {f"m{i}.bin": bytes([i]) * (1500 + i) for i in range(3)}
    blob = release_zip(members, deflated={"m1.bin"})
    assert zipformat.SIG_ZIP64_LOCATOR in blob[-200:]
    monkeypatch.undo()
    _assert_matches_zipfile(blob)


def test_parser_rejects_what_is_not_a_zip():
    with pytest.raises(ValueError, match="no end of central directory"):
        zipformat.locate_central_directory(b"\0" * 1000, 0, lambda *_: b"")


def test_parse_content_range():
    assert zipfetch.parse_content_range("bytes 10-19/100") == (10, 19, 100)
    with pytest.raises(ValueError):
        zipfetch.parse_content_range("bytes */100")
    with pytest.raises(ValueError):
        zipfetch.parse_content_range(None)


# --- the full official layout through the real converter --------------------------------------


def test_full_official_layout_installs_and_verifies(home, seeded_release_zip):
    """The real registry entry and converter on the full layout (conftest's seeded ~240 MB zip)."""
    from vidcolor.weights import convert

    blob = seeded_release_zip.read_bytes()
    with BlobServer(blob) as server:
        path = download.install(source=server.url, policy=FAST)
    assert path == cache.installed_dir(registry.DEFAULT)
    installed = convert.load_converted(path)
    with zipfile.ZipFile(io.BytesIO(blob)) as archive:
        data_bytes = sum(archive.getinfo(m.path_in_zip).compress_size for m in registry.DEFAULT.members)
        for member in registry.DEFAULT.members:
            served = torch.load(io.BytesIO(archive.read(member.path_in_zip)), weights_only=True)
            expected = convert.remap_official(member.checkpoint, served)
            assert installed[member.checkpoint].keys() == expected.keys()
            for name, tensor in expected.items():
                assert torch.equal(installed[member.checkpoint][name], tensor), (member.checkpoint, name)
    headers = len(registry.DEFAULT.members) * zipformat.LOCAL_HEADER_SIZE
    assert server.body_bytes == zipformat.TAIL_PROBE_SIZE + headers + data_bytes
    assert cache.is_installed() and len(download.verify()) == 3
