"""A least-recently-used cache bounded by bytes, shared by a service's per-experiment speed-ups.

Caches here are speed-ups only: every answer must be derivable from the request, so evicting
an entry (or losing the process) can cost time, never change a result. Entries are charged
their *estimated* size in bytes; when the total exceeds the bound, the least recently used
entries go first, and an entry larger than the whole bound is never stored.

Sizes are estimates, meant to be honest within a small factor: numpy arrays count their
``nbytes``, strings and containers a CPython-like per-object overhead (see
:func:`estimate_bytes`). A service process holds one :func:`shared` cache, sized by its
``--cache-mib`` flag (:data:`DEFAULT_MAX_BYTES` when not set), so the bound is one figure for
the whole process, whatever caches the algorithms keep.

Usage::

    cache = ByteLRU(max_bytes=64 << 20)
    cache.put(("decoded", fingerprint), trials, nbytes=estimate_bytes(trials))
    trials = cache.get(("decoded", fingerprint))   # None after eviction
    designer = cache.take(key)                      # exclusive: removed until put back
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

#: The default bound of a service's shared cache (256 MiB).
DEFAULT_MAX_BYTES = 256 << 20

#: Per-object overheads (CPython 3.11, 64-bit), used by :func:`estimate_bytes`.
OBJECT_BYTES = 56  # a small object with ``__slots__``/``__dict__`` pointer, or a boxed number
STR_BYTES = 49  # an empty ASCII str; each character adds one byte
DICT_ENTRY_BYTES = 40  # hash-table slot, key and value pointers, amortised growth
SEQ_ITEM_BYTES = 8  # one pointer in a list or tuple


class ByteLRU:
    """A thread-safe LRU mapping whose total charged size stays at or under ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def nbytes(self) -> int:
        """The total charged size of the entries held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def get(self, key: Hashable) -> Any:
        """The value stored under ``key`` (now the most recently used), or ``None``."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def take(self, key: Hashable) -> Any:
        """Remove and return the value under ``key`` (``None`` if absent).

        For mutable values (a designer being told new trials): the caller owns the value until
        it :meth:`put`\\ s it back, so two concurrent requests never mutate one object.
        """
        with self._lock:
            entry = self._entries.pop(key, None)
            if entry is None:
                return None
            self._bytes -= entry[1]
            return entry[0]

    def put(self, key: Hashable, value: Any, nbytes: int) -> bool:
        """Store ``value`` charged at ``nbytes``, evicting the least recently used entries.

        Returns False (and stores nothing) when ``nbytes`` alone exceeds the bound.
        """
        nbytes = max(int(nbytes), 0)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if nbytes > self.max_bytes:
                return False
            self._entries[key] = (value, nbytes)
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted
            return True

    def resize(self, max_bytes: int) -> None:
        """Change the bound, evicting least recently used entries as needed."""
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        with self._lock:
            self.max_bytes = max_bytes
            while self._bytes > self.max_bytes and self._entries:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self._bytes = 0


_SHARED = ByteLRU()


def shared() -> ByteLRU:
    """The process-wide cache (sized by the server's ``--cache-mib``)."""
    return _SHARED


def estimate_bytes(value: Any, depth: int = 6) -> int:
    """An estimate of the memory ``value`` holds, following containers ``depth`` levels deep.

    numpy arrays count ``nbytes`` plus their header; ``str``/``bytes`` their length plus the
    object header; dicts, lists, tuples and sets their items; dataclass-like objects their
    ``__dict__`` or ``__slots__``. Shared sub-objects are counted each time they are reached,
    so the estimate errs high, never low, for a value that shares nothing outside itself.
    """
    if isinstance(value, np.ndarray):
        return int(value.nbytes) + 112
    if isinstance(value, str | bytes | bytearray):
        return STR_BYTES + len(value)
    if value is None or isinstance(value, bool | int | float | complex):
        return OBJECT_BYTES // 2
    if depth <= 0:
        return sys.getsizeof(value)
    if isinstance(value, Mapping):
        return OBJECT_BYTES + sum(
            DICT_ENTRY_BYTES + estimate_bytes(k, depth - 1) + estimate_bytes(v, depth - 1)
            for k, v in value.items()
        )
    if isinstance(value, list | tuple | set | frozenset):
        return OBJECT_BYTES + sum(SEQ_ITEM_BYTES + estimate_bytes(v, depth - 1) for v in value) * (
            2 if isinstance(value, set | frozenset) else 1
        )
    fields = getattr(value, "__dict__", None)
    if fields is None and hasattr(type(value), "__slots__"):
        fields = {n: getattr(value, n, None) for n in type(value).__slots__}
    if fields is None:
        return sys.getsizeof(value)
    return OBJECT_BYTES + estimate_bytes(fields, depth - 1)
