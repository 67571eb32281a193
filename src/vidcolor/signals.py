"""SIGINT/SIGTERM noted, then raised where stopping is safe.

A Python signal handler raises in the main thread at whatever bytecode it reached. Inside a
frame loop that is often a join of the decode or encode thread, or a lock held in a queue: the
stop then leaves a thread writing into a container that is being closed, and the process can
hang. Under ``SignalLatch`` a signal is only noted; the loop calls ``check()`` between frames,
and a signal still pending when the latch is left is raised there, after the cleanup inside
it ran to the end. A second signal raises at once, so a stuck run can still be stopped.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalLatch:
    """Note SIGINT/SIGTERM while inside; ``check`` raises the first one as the handler in
    place before would (KeyboardInterrupt, or the CLI's ``Interrupted`` for SIGTERM).

    Only signals with a Python handler are latched (one ignored or left to the default action
    stays so), and only in the main thread, where handlers can be set.
    """

    def __init__(self):
        self.received: list[int] = []
        self.saved: dict[int, Any] = {}

    def __enter__(self) -> "SignalLatch":
        if threading.current_thread() is threading.main_thread():
            self.saved = {sig: signal.signal(sig, self._note) for sig in SIGNALS
                          if callable(signal.getsignal(sig))}
        return self

    def _note(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        self.received.append(signum)
        if len(self.received) > 1:  # asked twice: stop now, wherever the run is
            self._raise(signum)

    def _raise(self, signum: int) -> None:
        self.saved[signum](signum, None)
        raise KeyboardInterrupt  # the handler before did not raise: stop all the same

    def check(self) -> None:
        """Raise the first noted signal, if any."""
        if self.received:
            self._raise(self.received[0])

    def __exit__(self, exc_type, exc, tb) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)
        if exc_type is None:
            self.check()
