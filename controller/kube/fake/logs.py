"""Pod logs: each container's output, appended by the simulated kubelet, read by ``pods/log``."""

from __future__ import annotations

import threading


class PodLogs:
    """Each container's output, appended by the simulated kubelet and read by ``pods/log``."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self._data: dict[tuple[str, str, str], bytearray] = {}
        self._done: set[tuple[str, str, str]] = set()

    def append(self, namespace: str, pod: str, container: str, data: bytes) -> None:
        with self.changed:
            self._data.setdefault((namespace, pod, container), bytearray()).extend(data)
            self.changed.notify_all()

    def finish(self, namespace: str, pod: str, container: str) -> None:
        """The container has exited: followers read to the end and stop."""
        with self.changed:
            self._data.setdefault((namespace, pod, container), bytearray())
            self._done.add((namespace, pod, container))
            self.changed.notify_all()

    def forget(self, namespace: str, pod: str) -> None:
        """The pod is gone: drop its logs and release followers."""
        with self.changed:
            for key in [k for k in self._data if k[:2] == (namespace, pod)]:
                del self._data[key]
                self._done.add(key)
            self.changed.notify_all()

    def read(
        self, namespace: str, pod: str, container: str, offset: int
    ) -> tuple[bytes, bool] | None:
        """Bytes from ``offset`` and whether the log is complete; None if it never started."""
        with self.changed:
            key = (namespace, pod, container)
            data = self._data.get(key)
            if data is None:
                return None if key not in self._done else (b"", True)
            return bytes(data[offset:]), key in self._done
