"""Decode ahead in a background thread so the model never waits for the decoder.

FFmpeg's decoding and the RGB conversion release the GIL, so on a multi-core machine they run
beside the network. The queue is bounded: memory stays flat whatever the video's length.
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
