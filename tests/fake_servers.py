"""Local HTTP servers for the weight-download tests (127.0.0.1, an OS-chosen port).

``BlobServer`` serves one bytes blob the way a release host would, with switches for the
failures a download must survive: no Range support, a connection dropped once after N body
bytes, a fixed error status, slowness. ``FakeHubServer`` answers the two requests
``huggingface_hub.hf_hub_download`` makes (HEAD then GET on ``/<repo>/resolve/<rev>/<file>``).

Both record every request and the body bytes they wrote, stop on context exit, and refuse to
serve more than ``max_requests`` (503), so a client stuck in a retry loop cannot spin forever.
"""

from __future__ import annotations

import hashlib
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

WRITE_CHUNK = 64 * 1024
HANDLER_SOCKET_TIMEOUT_S = 10.0


PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def bypass_proxies(monkeypatch) -> None:
    """Clients honour proxy variables; requests to these servers must not go through one."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@dataclass(eq=False)
class RequestRecord:
    number: int  # 1-based, in arrival order
    method: str
    path: str
    range_header: str | None
    status: int
    body_bytes: int = 0


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """One ``bytes=`` range -> (start, end inclusive); None when absent or not understood;
    "unsatisfiable" when it asks beyond the blob."""
    if not header:
        return None
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not match or (not match[1] and not match[2]):
        return None
    if not match[1]:  # suffix: the last N bytes
        length = int(match[2])
        if length == 0:
            return "unsatisfiable"
        return max(0, size - length), size - 1
    start = int(match[1])
    end = int(match[2]) if match[2] else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


def blob_reply(
    blob: bytes, range_header: str | None, *, ranges: bool, etag: str, suffix_ranges: bool = True
) -> Reply:
    """What an HTTP/1.1 server answers for ``blob`` with this Range header.

    ``suffix_ranges=False`` mimics servers that honour ``bytes=N-`` but not ``bytes=-N``.
    """
    headers = {"ETag": etag, "Content-Type": "application/octet-stream"}
    is_suffix = bool(range_header) and range_header.strip().startswith("bytes=-")
    if not ranges or (is_suffix and not suffix_ranges):
        return Reply(200, headers, blob)
    headers["Accept-Ranges"] = "bytes"
    span = parse_range(range_header, len(blob))
    if span is None:
        return Reply(200, headers, blob)
    if span == "unsatisfiable":
        return Reply(416, {"Content-Range": f"bytes */{len(blob)}"}, b"")
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end}/{len(blob)}"
    return Reply(206, headers, blob[start : end + 1])


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False


class LocalServer:
    """A threaded HTTP server whose answers come from ``self.reply(method, path, headers)``."""

    def __init__(
        self,
        *,
        max_requests: int = 200,
        delay_s: float = 0.0,
        drop_once_after: int | None = None,
        drop_request: int | None = None,
    ):
        """``delay_s``: sleep before each 64 KiB body chunk. ``drop_once_after``: cut the first
        body longer than this many bytes after sending them, closing the connection;
        ``drop_request`` limits that to the request of this 1-based number."""
        self.max_requests = max_requests
        self.delay_s = delay_s
        self.drop_once_after = drop_once_after
        self.drop_request = drop_request
        self.records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._dropped = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- what subclasses decide ---------------------------------------------------------------
    def reply(self, method: str, path: str, headers) -> Reply:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- accounting ---------------------------------------------------------------------------
    @property
    def body_bytes(self) -> int:
        """Body bytes written to clients, over all requests."""
        with self._lock:
            return sum(record.body_bytes for record in self.records)

    def requests(self, method: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.records if method is None or r.method == method]

    # --- lifecycle ----------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self):
        self._server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # --- used by the handler ------------------------------------------------------------------
    def _admit(self, method: str, path: str, range_header: str | None) -> tuple[RequestRecord, bool]:
        """Record the request; False once the request budget is spent."""
        with self._lock:
            record = RequestRecord(len(self.records) + 1, method, path, range_header, 0)
            self.records.append(record)
            return record, record.number <= self.max_requests

    def _take_drop(self, record: RequestRecord, body_length: int) -> int | None:
        """Bytes to send before cutting the connection, the first time a body is long enough."""
        with self._lock:
            if self._dropped or self.drop_once_after is None or body_length <= self.drop_once_after:
                return None
            if self.drop_request is not None and record.number != self.drop_request:
                return None
            self._dropped = True
            return self.drop_once_after

    def _count(self, record: RequestRecord, sent: int) -> None:
        with self._lock:
            record.body_bytes += sent


def _make_handler(owner: LocalServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = HANDLER_SOCKET_TIMEOUT_S

        def log_message(self, format, *args) -> None:  # silence the per-request log lines
            pass

        def do_GET(self) -> None:
            self._answer(send_body=True)

        def do_HEAD(self) -> None:
            self._answer(send_body=False)

        def _answer(self, send_body: bool) -> None:
            record, admitted = owner._admit(self.command, self.path, self.headers.get("Range"))
            if not admitted:
                reply = Reply(503, {}, b"request budget of the fake server exhausted")
            else:
                reply = owner.reply(self.command, self.path, self.headers)
            record.status = reply.status
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if not send_body:
                return
            cut_at = owner._take_drop(record, len(reply.body))
            body = reply.body if cut_at is None else reply.body[:cut_at]
            try:
                for start in range(0, len(body), WRITE_CHUNK):
                    if owner.delay_s:
                        time.sleep(owner.delay_s)
                    chunk = body[start : start + WRITE_CHUNK]
                    self.wfile.write(chunk)
                    owner._count(record, len(chunk))
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, socket.timeout):
                self.close_connection = True
                return
            if cut_at is not None:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    return Handler


class BlobServer(LocalServer):
    """Serves ``blob`` at ``/<name>`` (404 elsewhere), or ``status`` for every request.

    ``redirect_from``: a path answered with 302 to ``/<name>``, as GitHub sends release
    downloads to its asset host."""

    def __init__(
        self,
        blob: bytes,
        *,
        name: str = "colorization_checkpoint.zip",
        ranges: bool = True,
        suffix_ranges: bool = True,
        status: int | None = None,
        redirect_from: str | None = None,
        **options,
    ):
        super().__init__(**options)
        self.blob = blob
        self.redirect_from = redirect_from
        self.name = name
        self.ranges = ranges
        self.suffix_ranges = suffix_ranges
        self.status = status
        self.etag = '"' + hashlib.sha256(blob).hexdigest()[:16] + '"'

    @property
    def url(self) -> str:
        return f"{self.base_url}/{self.name}"

    def reply(self, method: str, path: str, headers) -> Reply:
        if self.status is not None:
            return Reply(self.status, {}, f"fake failure {self.status}".encode())
        if self.redirect_from is not None and path == f"/{self.redirect_from}":
            return Reply(302, {"Location": self.url}, b"")
        if path != f"/{self.name}":
            return Reply(404, {}, b"not found")
        return blob_reply(
            self.blob,
            headers.get("Range"),
            ranges=self.ranges,
            etag=self.etag,
            suffix_ranges=self.suffix_ranges,
        )


class FakeHubServer(LocalServer):
    """Enough of the Hugging Face Hub for ``hf_hub_download``: ``/<org>/<repo>/resolve/<rev>/<file>``.

    ``repos`` maps repo id -> {revision name or commit -> {filename: bytes}}. A revision that is a
    branch name resolves to the commit ``commit_of(repo, revision)``; the ``X-Error-Code``
    headers are the ones huggingface_hub maps to its typed errors.
    """

    def __init__(self, repos: dict[str, dict[str, dict[str, bytes]]], **options):
        super().__init__(**options)
        self.repos = repos

    @staticmethod
    def commit_of(repo_id: str, revision: str) -> str:
        return hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()

    def reply(self, method: str, path: str, headers) -> Reply:
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path.split("?", 1)[0])
        if not match:
            return Reply(404, {"X-Error-Code": "RepoNotFound"}, b"no such route")
        repo_id, revision, filename = match[1], match[2], match[3]
        revisions = self.repos.get(repo_id)
        if revisions is None:
            return Reply(401, {"X-Error-Code": "RepoNotFound"}, b"Repository not found")
        files = revisions.get(revision)
        if files is None:
            return Reply(404, {"X-Error-Code": "RevisionNotFound"}, b"Invalid rev id")
        commit = self.commit_of(repo_id, revision)
        if filename not in files:
            return Reply(
                404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit}, b"Entry not found"
            )
        blob = files[filename]
        reply = blob_reply(
            blob, headers.get("Range"), ranges=True, etag='"' + hashlib.sha256(blob).hexdigest() + '"'
        )
        reply.headers["X-Repo-Commit"] = commit
        return reply



# ==============================================================================================
# Fake releases: release-shaped zips of tiny checkpoints, and a converter for their layout
# ==============================================================================================
# The real conversion (weights/convert.py) insists on the official 0.24 GB layout; these tiny
# checkpoints keep the download tests fast. One test in test_weights_download.py uses the full
# official layout with the real converter.

TINY_LAYOUT: dict[str, dict[str, tuple[int, ...]]] = {
    # ~100-200 KB per member, so the members dwarf the 64 KiB tail the range path reads.
    "vgg19_conv": {"conv.weight": (40, 1000), "conv.bias": (40,)},
    "nonlocal_net": {"theta.weight": (30, 1000), "theta.bias": (30,)},
    "colornet": {"head.weight": (50, 1000), "head.bias": (50,)},
}
UNNEEDED_MEMBER = "data/vgg19_gray.pth"  # in the release, never fetched


def tiny_state_dict(kind: str) -> dict:
    import torch

    generator = torch.Generator().manual_seed(sum(map(ord, kind)))
    return {
        key: torch.rand(shape, generator=generator, dtype=torch.float32)
        for key, shape in TINY_LAYOUT[kind].items()
    }


def checkpoint_bytes(state: dict) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def _check_tiny(kind: str, tensors: dict, where) -> None:
    from vidcolor.errors import WeightsError

    expected = TINY_LAYOUT[kind]
    if set(tensors) != set(expected):
        raise WeightsError(f"{where}: keys {sorted(tensors)} != {sorted(expected)}")
    for key, shape in expected.items():
        if tuple(tensors[key].shape) != shape:
            raise WeightsError(f"{where}: {key} has shape {tuple(tensors[key].shape)}")


def tiny_converter():
    """A ``download.Converter`` for TINY_LAYOUT: torch.load(weights_only) + strict keys/shapes."""
    import torch
    from safetensors.torch import load_file, save_file

    from vidcolor.weights.download import Converter

    def load_official(kind, path):
        tensors = torch.load(path, map_location="cpu", weights_only=True)
        _check_tiny(kind, tensors, path)
        return tensors

    def save_converted(directory, kind, tensors):
        target = Path(directory) / f"{kind}.safetensors"
        save_file(dict(tensors), str(target))
        return target

    def load_converted(directory):
        loaded = {}
        for kind in TINY_LAYOUT:
            path = Path(directory) / f"{kind}.safetensors"
            tensors = load_file(str(path))
            _check_tiny(kind, tensors, path)
            loaded[kind] = tensors
        return loaded

    return Converter(load_official, save_converted, load_converted)


def release_zip(members: dict[str, bytes], *, deflated: set[str] = frozenset(), comment: bytes = b"") -> bytes:
    """A zip holding ``members`` (stored, or deflated for names in ``deflated``)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            method = zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data, compress_type=method)
        archive.comment = comment
    return buffer.getvalue()
