"""Leader election through a ``coordination.k8s.io/v1`` Lease, so two replicas never both act.

The Lease's ``spec`` holds ``holderIdentity``, ``leaseDurationSeconds``, ``acquireTime``,
``renewTime`` and ``leaseTransitions``. Every write is a PUT (or create) carrying the
``resourceVersion`` that was read, so of two candidates racing for the same Lease exactly one
wins; the other gets a 409 Conflict and stays a candidate.

Timing, as client-go's ``leaderelection`` package does it: a candidate never trusts the
holder's clock. It notes *when it saw* the Lease record last change and takes the Lease over
only after ``lease_duration`` seconds without a change (or at once when it has been released:
empty ``holderIdentity``). The leader renews every ``retry_period``; if it has not renewed
successfully for ``renew_deadline`` (< ``lease_duration``) it stops leading: :meth:`is_leader`
turns false at that moment even if a request is still hanging, and ``on_stopped_leading``
runs. Because ``renew_deadline < lease_duration`` the old leader has given up before any
candidate may take over, so two leaders never overlap (given clocks that run at the same rate).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from katib.controller.kube.api import AlreadyExists, ApiError, Conflict, KubeApi, RetryPolicy
from katib.controller.kube.resources import LEASES

log = logging.getLogger(__name__)


def micro_time(when: float) -> str:
    """Kubernetes' MicroTime: RFC 3339 in UTC with microseconds."""
    return dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """One candidate for leadership of the Lease ``namespace/name``.

    ``run(stop, on_started_leading, on_stopped_leading)`` blocks: it campaigns until it holds
    the Lease, calls ``on_started_leading()``, renews until ``stop`` is set or renewals fail for
    ``renew_deadline``, then calls ``on_stopped_leading()`` (which should return only once the
    process has stopped acting) and, on a clean stop, releases the Lease so a standby takes over
    at once. It returns ``True`` after a clean stop, ``False`` if leadership was lost.
    """

    def __init__(
        self,
        api: KubeApi,
        *,
        name: str,
        namespace: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        for field, value in (("name", name), ("namespace", namespace), ("identity", identity)):
            if not value:
                raise ValueError(f"{field}: must not be empty")
        if not 0 < retry_period < renew_deadline < lease_duration:
            raise ValueError(
                "lease timing: need 0 < retry_period < renew_deadline < lease_duration, got "
                f"{retry_period}, {renew_deadline}, {lease_duration}"
            )
        # Lease calls must not block past the renew deadline: short retries, short timeouts.
        self.api = api.with_options(
            retry=RetryPolicy(base=0.05, cap=retry_period, deadline=retry_period),
            request_timeout=max(0.5, min(retry_period, renew_deadline / 2)),
        )
        self.name = name
        self.namespace = namespace
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._clock = time.monotonic
        self._wall = wall_clock
        self._observed: tuple[Any, ...] | None = None  # the Lease record last seen
        self._observed_at = 0.0  # when (self._clock) it was first seen
        self._renewed_at: float | None = None  # last successful acquire/renew, while leader
        self.last_contact: float | None = None  # last successful read or write of the Lease
        self._lock = threading.Lock()

    def is_leader(self) -> bool:
        """Whether this candidate holds the Lease and renewed it within ``renew_deadline``."""
        with self._lock:
            renewed = self._renewed_at
        return renewed is not None and self._clock() - renewed < self.renew_deadline

    def in_contact(self) -> bool:
        """Whether the Lease was read or written within ``lease_duration`` (standby health)."""
        contact = self.last_contact
        return contact is not None and self._clock() - contact < self.lease_duration

    def run(
        self,
        stop: threading.Event,
        on_started_leading: Callable[[], None] = lambda: None,
        on_stopped_leading: Callable[[], None] = lambda: None,
    ) -> bool:
        """Campaign, lead, and step down; see the class docstring."""
        if not self._acquire(stop):
            return True
        log.info("%s: leading (lease %s/%s)", self.identity, self.namespace, self.name)
        lost = threading.Event()
        stepped_down = threading.Event()
        step_lock = threading.Lock()

        def step_down() -> None:
            with step_lock:
                if not stepped_down.is_set():
                    stepped_down.set()
                    on_stopped_leading()

        def watchdog() -> None:  # steps down on time even while a renewal request hangs
            while not stepped_down.is_set():
                with self._lock:
                    renewed = self._renewed_at
                left = -1.0 if renewed is None else self.renew_deadline - (self._clock() - renewed)
                if left <= 0:
                    if not stop.is_set():
                        lost.set()
                        log.error(
                            "%s: lost the lease %s/%s", self.identity, self.namespace, self.name
                        )
                        step_down()
                    return
                stepped_down.wait(left)

        guard = threading.Thread(target=watchdog, daemon=True, name="lease-watchdog")
        guard.start()
        try:
            on_started_leading()
            self._renew(stop, lost)
        finally:
            step_down()
        if lost.is_set():
            return False
        self.release()
        return True

    def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the Lease; whether this candidate now holds it."""
        now = self._clock()
        try:
            lease = self.api.get(LEASES, self.namespace, self.name)
        except ApiError as exc:
            log.warning("%s: reading lease: %s", self.identity, exc)
            return False
        self.last_contact = self._clock()
        if lease is None:
            return self._create(now)
        spec = lease.get("spec") or {}
        record = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("leaseTransitions"),
            spec.get("leaseDurationSeconds"),
        )
        if record != self._observed:
            self._observed, self._observed_at = record, now
        holder = spec.get("holderIdentity") or ""
        duration = _seconds(spec.get("leaseDurationSeconds"), self.lease_duration)
        if holder and holder != self.identity and now - self._observed_at < duration:
            with self._lock:
                self._renewed_at = None  # if we thought we led, we do not: step down now
            return False  # held by another candidate that renewed recently
        wall = micro_time(self._wall())
        transitions = spec.get("leaseTransitions")
        transitions = transitions if isinstance(transitions, int) and transitions >= 0 else 0
        new_spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, math.ceil(self.lease_duration)),
            "acquireTime": spec.get("acquireTime") if holder == self.identity else wall,
            "renewTime": wall,
            "leaseTransitions": transitions if holder == self.identity else transitions + 1,
        }
        body = {**lease, "spec": {**spec, **new_spec}}
        try:
            written = self.api.replace(LEASES, self.namespace, self.name, body)
        except Conflict:
            return False  # someone else wrote first: look again next round
        except ApiError as exc:
            log.warning("%s: writing lease: %s", self.identity, exc)
            return False
        self._record_success(written, now)
        return True

    def release(self) -> None:
        """Give up the Lease if this candidate still holds it (a clean shutdown)."""
        with self._lock:
            self._renewed_at = None
        try:
            lease = self.api.get(LEASES, self.namespace, self.name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            spec = {
                **lease["spec"],
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "renewTime": micro_time(self._wall()),
            }
            self.api.replace(LEASES, self.namespace, self.name, {**lease, "spec": spec})
            log.info("%s: released the lease %s/%s", self.identity, self.namespace, self.name)
        except ApiError as exc:  # it expires by itself
            log.warning("%s: releasing lease: %s", self.identity, exc)

    def _create(self, now: float) -> bool:
        wall = micro_time(self._wall())
        body = {
            "apiVersion": LEASES.api_version,
            "kind": LEASES.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": max(1, math.ceil(self.lease_duration)),
                "acquireTime": wall,
                "renewTime": wall,
                "leaseTransitions": 0,
            },
        }
        try:
            written = self.api.create(LEASES, self.namespace, body)
        except AlreadyExists:
            return False
        except ApiError as exc:
            log.warning("%s: creating lease: %s", self.identity, exc)
            return False
        self._record_success(written, now)
        return True

    def _record_success(self, written: dict[str, Any], now: float) -> None:
        spec = written.get("spec") or {}
        self._observed = (
            spec.get("holderIdentity"),
            spec.get("renewTime"),
            spec.get("leaseTransitions"),
            spec.get("leaseDurationSeconds"),
        )
        self._observed_at = now
        self.last_contact = self._clock()
        with self._lock:
            self._renewed_at = now  # the time the attempt started: conservative

    def _acquire(self, stop: threading.Event) -> bool:
        while not stop.is_set():
            if self.try_acquire_or_renew():
                return True
            stop.wait(self.retry_period)
        return False

    def _renew(self, stop: threading.Event, lost: threading.Event) -> None:
        """Renew every ``retry_period`` until ``stop`` or until the watchdog marks it ``lost``."""
        while not stop.wait(self.retry_period) and not lost.is_set():
            if not self.try_acquire_or_renew() and not self.is_leader():
                lost.wait(self.retry_period)  # the watchdog is stepping down


def _seconds(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) and value > 0 else default
