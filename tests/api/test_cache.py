"""The byte-bounded LRU cache and its size estimates."""

from __future__ import annotations

import sys
import threading
import tracemalloc
from datetime import UTC, datetime

import numpy as np
import pytest

from katib.api.cache import ByteLRU, estimate_bytes
from katib.api.trials import Trial, TrialState


def test_total_bytes_stay_under_the_bound_evicting_least_recently_used() -> None:
    cache = ByteLRU(max_bytes=100)
    for key in "abc":
        assert cache.put(key, key, 40)
    assert "a" not in cache and cache.nbytes == 80  # a went first
    assert cache.get("b") == "b"  # b is now the most recent
    cache.put("d", "d", 40)
    assert "c" not in cache and {"b", "d"} <= {k for k in "bd" if k in cache}
    assert not cache.put("huge", "x", 101) and "huge" not in cache
    assert cache.nbytes == 80


def test_take_removes_until_put_back_and_resize_evicts() -> None:
    cache = ByteLRU(max_bytes=100)
    cache.put("a", [1], 30)
    cache.put("b", [2], 30)
    value = cache.take("a")
    assert value == [1] and "a" not in cache and cache.nbytes == 30
    assert cache.take("a") is None
    cache.put("a", value, 30)
    cache.resize(40)
    assert len(cache) == 1 and cache.nbytes == 30 and "a" in cache
    with pytest.raises(ValueError):
        ByteLRU(-1)


def test_replacing_a_key_recharges_it() -> None:
    cache = ByteLRU(max_bytes=100)
    cache.put("a", 1, 60)
    cache.put("a", 2, 10)
    assert cache.nbytes == 10 and cache.get("a") == 2


def test_concurrent_puts_keep_the_books_straight() -> None:
    cache = ByteLRU(max_bytes=10_000)

    def work(i: int) -> None:
        for j in range(500):
            cache.put((i, j % 37), j, 100 + j % 7)
            cache.take((i, (j * 7) % 37))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.nbytes <= cache.max_bytes
    assert cache.nbytes == sum(cache._entries[k][1] for k in list(cache._entries))


def _measured(build) -> int:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    value = build()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before, value  # type: ignore[return-value]


def test_estimates_are_honest_within_a_factor_of_two() -> None:
    """Checked against tracemalloc's count of what building the value allocated."""

    def trials() -> list[Trial]:
        return [
            Trial(
                name=f"experiment-trial-{i:05d}",
                point={f"p{k}": float(i * k) for k in range(10)},
                state=TrialState.SUCCEEDED,
                value=float(i),
                metrics={"loss": str(i / 7)},
                labels={"stage": str(i % 3)},
                start_time=datetime(2026, 1, 1, tzinfo=UTC),
            )
            for i in range(2000)
        ]

    measured, value = _measured(trials)
    estimated = estimate_bytes(value)
    assert measured / 2 < estimated < measured * 2, (measured, estimated)
    array = np.zeros((300, 100))
    assert estimate_bytes(array) >= array.nbytes
    assert estimate_bytes("x" * 1000) == pytest.approx(sys.getsizeof("x" * 1000), rel=0.1)
