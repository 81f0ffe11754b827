"""WorkQueue: de-duplication, delays, per-key back-off, one worker per key, shutdown."""

from __future__ import annotations

import collections
import threading
import time

import pytest

from katib.controller.kube.workqueue import WorkQueue


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_adds_are_deduplicated_and_fifo() -> None:
    queue = WorkQueue()
    for key in ["a", "b", "a", "c", "b"]:
        queue.add(key)
    assert len(queue) == 3
    assert [queue.get(0) for _ in range(3)] == ["a", "b", "c"]
    assert queue.get(0) is None


def test_a_key_readded_while_processing_waits_for_done() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert queue.get(0) == "a"
    queue.add("a")
    queue.add("a")
    assert queue.get(0) is None  # not handed out a second time while processing
    queue.done("a")
    assert queue.get(0) == "a"  # once, after done
    queue.done("a")
    assert queue.get(0) is None


def test_done_without_readd_does_not_requeue() -> None:
    queue = WorkQueue()
    queue.add("a")
    assert queue.get(0) == "a"
    queue.done("a")
    assert queue.get(0) is None


def test_delayed_adds_become_ready_when_due_earliest_wins() -> None:
    clock = FakeClock()
    queue = WorkQueue(clock=clock)
    queue.add("a", delay=10)
    queue.add("a", delay=5)  # earlier: wins
    queue.add("a", delay=20)  # later: ignored
    queue.add("b", delay=7)
    assert queue.get(0) is None
    clock.now += 5
    assert queue.get(0) == "a"
    queue.done("a")
    clock.now += 2
    assert queue.get(0) == "b"
    queue.done("b")
    clock.now += 100
    assert queue.get(0) is None  # the superseded entries for "a" do not fire again


def test_get_wakes_for_a_delayed_key_in_real_time() -> None:
    queue = WorkQueue()
    queue.add("a", delay=0.2)
    started = time.monotonic()
    assert queue.get(timeout=10) == "a"
    assert 0.2 <= time.monotonic() - started < 10


def test_retry_backs_off_exponentially_and_forget_resets() -> None:
    clock = FakeClock()
    queue = WorkQueue(base_delay=1.0, max_delay=5.0, clock=clock)
    delays = []
    for _ in range(5):
        queue.retry("a")
        start = clock.now
        while queue.get(0) is None:
            clock.now += 0.5
        queue.done("a")
        delays.append(clock.now - start)
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert queue.failures("a") == 5
    queue.forget("a")
    assert queue.failures("a") == 0
    queue.retry("a")
    clock.now += 1.0
    assert queue.get(0) == "a"


def test_shutdown_wakes_waiting_workers_and_ignores_adds() -> None:
    queue = WorkQueue()
    results: list[str | None] = []
    workers = [threading.Thread(target=lambda: results.append(queue.get())) for _ in range(3)]
    for worker in workers:
        worker.start()
    queue.shutdown()
    for worker in workers:
        worker.join(10)
        assert not worker.is_alive()
    assert results == [None, None, None]
    queue.add("a")
    assert queue.get(0) is None


def test_concurrent_workers_never_share_a_key_and_lose_no_add() -> None:
    queue = WorkQueue()
    keys = [f"k{i}" for i in range(8)]
    active: set[str] = set()
    lock = threading.Lock()
    overlaps: list[str] = []
    processed: collections.Counter[str] = collections.Counter()
    last_add: dict[str, int] = {}
    seen_after: dict[str, int] = {}
    counter = iter(range(10**9))

    def worker() -> None:
        while (key := queue.get()) is not None:
            with lock:
                if key in active:
                    overlaps.append(key)
                active.add(key)
                seen_after[key] = next(counter)
            time.sleep(0.0005)
            with lock:
                active.discard(key)
                processed[key] += 1
            queue.done(key)

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for round_ in range(300):
        for key in keys[round_ % 3 :: 3]:
            with lock:
                last_add[key] = next(counter)
            queue.add(key)
    # every key's last add must be followed by a processing that started after it
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with lock:
            if all(seen_after.get(k, -1) > last_add[k] for k in keys) and not active:
                break
        time.sleep(0.01)
    queue.shutdown()
    for thread in threads:
        thread.join(10)
    assert overlaps == []
    assert all(seen_after[k] > last_add[k] for k in keys)
    assert sum(processed.values()) <= 800  # 800 adds: never more processings than adds


def test_bad_delays_are_rejected() -> None:
    with pytest.raises(ValueError, match="base_delay"):
        WorkQueue(base_delay=10, max_delay=1)
