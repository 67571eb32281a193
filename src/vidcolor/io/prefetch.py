"""Decode ahead and encode behind in background threads: the model never waits for I/O.

FFmpeg's decoding, encoding and the RGB conversions release the GIL, so on a multi-core
machine they run beside the network (``prefetch`` before it, ``WriteBehind`` after it). The
queues are bounded: memory stays flat whatever the video's length.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

_DONE = object()
# How long a blocked producer waits before checking whether the consumer has gone away.
_POLL_SECONDS = 0.1


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """Yield ``items`` in order, produced up to ``depth`` ahead by a worker thread.

    An exception in the producer is re-raised in the consumer. When the consumer stops early
    (an error, Ctrl-C, ``close()``), the worker is stopped and joined before this returns, so
    the caller may close the underlying container safely afterwards.
    """
    buffer: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as error:  # handed to the consumer, which re-raises it
            put((_DONE, error))
            return
        put((_DONE, None))

    worker = threading.Thread(target=produce, name="vidcolor-decode", daemon=True)
    worker.start()
    try:
        while True:
            item, error = buffer.get()
            if error is not None:
                raise error
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
        worker.join()


class WriteBehind:
    """Run ``submit``-ted calls in order in one worker thread, at most ``depth`` queued.

    The encode side of the pipeline: the loop hands each finished frame over and goes on with
    the next while FFmpeg encodes (it releases the GIL). An exception in the worker is
    re-raised by the next ``submit`` or by ``close``; once one has failed, later calls are
    dropped. ``close`` waits for every queued call; leaving the ``with`` block on an error
    drops the queued calls instead (the output is discarded anyway) and joins the worker.
    """

    def __init__(self, depth: int, name: str = "vidcolor-encode"):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._error: BaseException | None = None
        self._abandon = threading.Event()
        self._worker = threading.Thread(target=self._run, name=name, daemon=True)
        self._worker.start()

    def _run(self) -> None:
        while True:
            call = self._queue.get()
            if call is _DONE:
                return
            if self._error is not None or self._abandon.is_set():
                continue
            try:
                call[0](*call[1])
            except BaseException as error:  # handed to the producer, which re-raises it
                self._error = error

    def _raise_pending(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._abandon.set()  # nothing after a failed call may run
            raise error

    def submit(self, fn, *args) -> None:
        self._raise_pending()
        if self._abandon.is_set():
            return
        while True:
            try:
                self._queue.put((fn, args), timeout=_POLL_SECONDS)
                return
            except queue.Full:
                if not self._worker.is_alive():
                    raise RuntimeError("the encode worker stopped unexpectedly") from None
                self._raise_pending()

    def close(self) -> None:
        """Wait for every queued call, then re-raise the first failure, if any."""
        if self._worker.is_alive():
            self._queue.put(_DONE)
            self._worker.join()
        self._raise_pending()

    def __enter__(self) -> "WriteBehind":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self._abandon.set()
            if self._worker.is_alive():
                self._queue.put(_DONE)
                self._worker.join()
            return False
        self.close()
        return False
