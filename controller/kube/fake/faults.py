"""Fault injection for the fake API server: failed requests, dropped watches, expired history.

A test arms the server's :class:`FaultPlan`::

    server.faults.fail(verb="update", plural="trials/status", status=409, times=2)
    server.faults.fail(verb="list", status=429, probability=0.3, retry_after=1)
    server.faults.drop_watches()     # every open watch stream ends now
    server.faults.expire()           # history compacted: resuming an old watch gets 410 Gone

Verbs are Kubernetes' (get, list, watch, create, update, patch, delete). ``plural`` is the
resource (``"trials"``, which also matches its subresources) or one subresource
(``"trials/status"``, ``"pods/log"``); ``None`` matches every resource. Rules are checked in the
order they were armed; the first that fires answers the request with a Kubernetes ``Status`` of
that code.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass

_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Gone",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def reason_for(status: int) -> str:
    """Kubernetes' ``Status.reason`` for an HTTP status code."""
    return _REASONS.get(status, "Unknown")


@dataclass
class _Rule:
    verb: str | None
    plural: str | None
    status: int
    times: int | None
    probability: float
    retry_after: int | None

    def matches(self, verb: str, resource: str) -> bool:
        if self.verb is not None and self.verb != verb:
            return False
        if self.plural is None:
            return True
        return self.plural == resource or self.plural == resource.partition("/")[0]


@dataclass(frozen=True)
class Fault:
    """A fault that fired: the status to answer with and an optional ``Retry-After`` (seconds)."""

    status: int
    retry_after: int | None


class FaultPlan:
    """The armed faults; thread-safe. ``fired`` counts the faults answered so far."""

    def __init__(
        self, *, on_drop: Callable[[bool], None], on_expire: Callable[[], None], seed: int = 0
    ) -> None:
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._rng = random.Random(seed)
        self._on_drop = on_drop
        self._on_expire = on_expire
        self.fired = 0

    def fail(
        self,
        *,
        verb: str | None = None,
        plural: str | None = None,
        status: int = 500,
        times: int | None = None,
        probability: float | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer matching requests with ``status``: the next ``times`` of them, or each with
        ``probability``, or (neither given) exactly once."""
        if times is not None and probability is not None:
            raise ValueError("fail: give times or probability, not both")
        if not 400 <= status <= 599:
            raise ValueError(f"fail: status must be an HTTP error code, got {status}")
        if probability is not None and not 0.0 < probability <= 1.0:
            raise ValueError(f"fail: probability must be in (0, 1], got {probability}")
        if times is not None and times < 1:
            raise ValueError(f"fail: times must be at least 1, got {times}")
        rule = _Rule(
            verb,
            plural,
            status,
            None if probability is not None else (times or 1),
            probability if probability is not None else 1.0,
            retry_after,
        )
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        """Disarm every request fault."""
        with self._lock:
            self._rules.clear()

    def check(self, verb: str, resource: str) -> Fault | None:
        """The fault for this request, if one fires (called by the server for each request)."""
        with self._lock:
            for rule in self._rules:
                if not rule.matches(verb, resource):
                    continue
                if rule.probability < 1.0 and self._rng.random() >= rule.probability:
                    continue
                if rule.times is not None:
                    rule.times -= 1
                    if rule.times == 0:
                        self._rules.remove(rule)
                self.fired += 1
                return Fault(rule.status, rule.retry_after)
        return None

    def drop_watches(self, *, abrupt: bool = False) -> None:
        """End every open watch stream now: cleanly (the last chunk is sent), or ``abrupt``ly
        (the connection is closed mid-stream, as a failing load balancer does)."""
        self._on_drop(abrupt)

    def expire(self) -> None:
        """Compact the event history: a watch from any earlier resourceVersion gets 410 Gone."""
        self._on_expire()
