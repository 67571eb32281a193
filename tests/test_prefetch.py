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
