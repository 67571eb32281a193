"""Background decoding keeps order, bounds memory, passes errors and stops cleanly."""

import threading
import time

import pytest

from vidcolor.io.prefetch import prefetch


def test_order_and_completeness():
    assert list(prefetch(range(100), depth=3)) == list(range(100))


def test_bounded_lookahead():
    produced = []

    def source():
        for i in range(50):
            produced.append(i)
            yield i

    iterator = prefetch(source(), depth=4)
    assert next(iterator) == 0
    time.sleep(0.2)
    # consumed 1, queue holds at most 4, plus one item waiting to be put
    assert len(produced) <= 1 + 4 + 1
    iterator.close()


def test_producer_error_reaches_consumer():
    def source():
        yield 1
        raise ValueError("decoder broke")

    iterator = prefetch(source(), depth=2)
    assert next(iterator) == 1
    with pytest.raises(ValueError, match="decoder broke"):
        next(iterator)


def test_early_stop_joins_the_worker():
    before = threading.active_count()
    iterator = prefetch(iter(range(10_000)), depth=2)
    next(iterator)
    iterator.close()
    assert threading.active_count() == before


def test_write_behind_runs_calls_in_order_in_another_thread():
    from vidcolor.io.prefetch import WriteBehind

    seen = []
    with WriteBehind(depth=2) as behind:
        for i in range(20):
            behind.submit(lambda k: seen.append((k, threading.current_thread().name)), i)
    assert [k for k, _ in seen] == list(range(20))  # close() waited for every call
    assert {name for _, name in seen} == {"vidcolor-encode"}


def test_write_behind_reraises_the_worker_error_and_drops_later_calls():
    from vidcolor.io.prefetch import WriteBehind

    ran = []

    def write(k):
        if k == 3:
            raise OSError("disk full")
        ran.append(k)

    with pytest.raises(OSError, match="disk full"):
        with WriteBehind(depth=1) as behind:
            for i in range(50):
                behind.submit(write, i)
                time.sleep(0.001)
    assert ran == [0, 1, 2]  # nothing ran after the failure


def test_write_behind_abandons_queued_calls_when_the_producer_fails():
    from vidcolor.io.prefetch import WriteBehind

    release, ran = threading.Event(), []
    with pytest.raises(KeyboardInterrupt):
        with WriteBehind(depth=4) as behind:
            behind.submit(release.wait)  # the worker is busy until the producer has failed
            for i in range(3):
                behind.submit(ran.append, i)
            threading.Timer(0.2, release.set).start()
            raise KeyboardInterrupt
    assert ran == []  # the output is discarded anyway: queued frames are not encoded
