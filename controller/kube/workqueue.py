"""A work queue of object keys for reconcile workers, with client-go's guarantees.

* **De-duplication**: a key added many times before a worker takes it is handed out once.
* **One worker per key**: a key being processed is never handed to a second worker; if it is
  added meanwhile, it is queued again when the first worker calls :meth:`WorkQueue.done`.
* **Delays**: ``add(key, delay)`` makes the key ready after ``delay`` seconds (the earliest of
  several pending delays wins); :meth:`WorkQueue.retry` adds with a per-key exponential
  back-off (``base * 2**failures``, capped) that :meth:`WorkQueue.forget` resets.
* **Shutdown**: :meth:`WorkQueue.shutdown` wakes every waiting worker; ``get`` then returns
  ``None`` and later adds are ignored.

A worker's loop::

    while (key := queue.get()) is not None:  # None: the queue was shut down
        try:
            reconcile(key)
            queue.forget(key)
        except Exception:
            queue.retry(key)
        finally:
            queue.done(key)
"""

from __future__ import annotations

import collections
import heapq
import threading
import time
from collections.abc import Callable


class WorkQueue:
    """Keys waiting for a worker; see the module docstring for the guarantees."""

    def __init__(
        self,
        *,
        base_delay: float = 0.05,
        max_delay: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= base_delay <= max_delay:
            raise ValueError(
                f"base_delay: must be in [0, max_delay={max_delay}], got {base_delay}"
            )
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._clock = clock
        self._ready: collections.deque[str] = collections.deque()
        self._dirty: set[str] = set()  # queued, or re-added while processing
        self._processing: set[str] = set()
        self._delayed: list[tuple[float, int, str]] = []  # heap of (due, sequence, key)
        self._due: dict[str, float] = {}  # earliest pending due time per delayed key
        self._sequence = 0
        self._failures: collections.Counter[str] = collections.Counter()
        self._shutdown = False
        self._cond = threading.Condition()

    def add(self, key: str, delay: float = 0.0) -> None:
        """Make ``key`` ready now, or after ``delay`` seconds."""
        with self._cond:
            if self._shutdown:
                return
            if delay > 0:
                due = self._clock() + delay
                if key in self._due and self._due[key] <= due:
                    return
                self._due[key] = due
                self._sequence += 1
                heapq.heappush(self._delayed, (due, self._sequence, key))
                self._cond.notify_all()  # a waiting get may need to wake earlier
                return
            self._add_now(key)

    def get(self, timeout: float | None = None) -> str | None:
        """The next ready key, marked as being processed; ``None`` after ``timeout`` seconds
        or once the queue is shut down and empty."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                now = self._clock()
                self._promote(now)
                if self._ready:
                    key = self._ready.popleft()
                    self._dirty.discard(key)
                    self._processing.add(key)
                    return key
                if self._shutdown:
                    return None
                wait = None if deadline is None else deadline - now
                if wait is not None and wait <= 0:
                    return None
                if self._delayed:
                    until_due = self._delayed[0][0] - now
                    wait = until_due if wait is None else min(wait, until_due)
                self._cond.wait(wait)

    def done(self, key: str) -> None:
        """The worker has finished with ``key``; if it was added meanwhile it is ready again."""
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._ready.append(key)
                self._cond.notify()

    def retry(self, key: str) -> None:
        """Add ``key`` again after its back-off: ``base_delay * 2**failures``, capped."""
        with self._cond:
            failures = self._failures[key]
            self._failures[key] += 1
        self.add(key, min(self.max_delay, self.base_delay * 2.0 ** min(failures, 60)))

    def forget(self, key: str) -> None:
        """Reset ``key``'s back-off (after a successful reconcile)."""
        with self._cond:
            self._failures.pop(key, None)

    def failures(self, key: str) -> int:
        """How many retries ``key`` has had since it was last forgotten."""
        with self._cond:
            return self._failures[key]

    def shutdown(self) -> None:
        """Stop handing out keys: waiting and future ``get`` calls return ``None``."""
        with self._cond:
            self._shutdown = True
            self._ready.clear()
            self._dirty.clear()
            self._delayed.clear()
            self._due.clear()
            self._cond.notify_all()

    def __len__(self) -> int:
        """Keys ready now (not counting delayed or in-process ones)."""
        with self._cond:
            return len(self._ready)

    def _add_now(self, key: str) -> None:
        if key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return  # done() re-queues it, so no second worker gets it meanwhile
        self._ready.append(key)
        self._cond.notify()

    def _promote(self, now: float) -> None:
        while self._delayed and self._delayed[0][0] <= now:
            due, _, key = heapq.heappop(self._delayed)
            if self._due.get(key) == due:
                del self._due[key]
                self._add_now(key)
