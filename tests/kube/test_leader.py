"""Leader election through a Lease on the fake API server: one leader at a time among racing
candidates (also with injected conflicts and errors), takeover after the holder stops renewing,
immediate takeover after a clean release."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from katib.controller.kube.api import KubeApi, RetryPolicy
from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.leader import LeaderElector
from katib.controller.kube.resources import LEASES

# A margin of 1 s between the leader giving up and a standby taking over, for a loaded machine.
#: Short enough for quick takeovers, long enough that a leader beside CPU burners, whose
#: in-process fake API server can answer nothing for 1.5 s, keeps renewing (3 s deadline).
FAST = {"lease_duration": 4.5, "renew_deadline": 3.0, "retry_period": 0.1}


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    with FakeApiServer() as fake:
        yield fake


class Candidate:
    """A candidate in a thread that records when it leads, checking nobody else does."""

    def __init__(self, api: KubeApi, identity: str, ledger: Ledger, **timing: float) -> None:
        self.elector = LeaderElector(
            api,
            name="katib-controller",
            namespace="default",
            identity=identity,
            **{**FAST, **timing},
        )
        self.identity = identity
        self.ledger = ledger
        self.stop = threading.Event()
        self.result: bool | None = None
        self.thread = threading.Thread(target=self._run, name=identity)

    def _run(self) -> None:
        self.result = self.elector.run(
            self.stop,
            lambda: self.ledger.start(self.identity),
            lambda: self.ledger.end(self.identity),
        )

    def start(self) -> Candidate:
        self.thread.start()
        return self

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(20)
        assert not self.thread.is_alive()


class Ledger:
    """Who leads when; an overlap of two leaders is recorded as a violation."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.leading: set[str] = set()
        self.history: list[tuple[str, str, float]] = []
        self.violations: list[str] = []

    def start(self, identity: str) -> None:
        with self.lock:
            if self.leading:
                self.violations.append(f"{identity} started while {self.leading} led")
            self.leading.add(identity)
            self.history.append(("start", identity, time.monotonic()))

    def end(self, identity: str) -> None:
        with self.lock:
            self.leading.discard(identity)
            self.history.append(("end", identity, time.monotonic()))

    def leaders(self) -> set[str]:
        with self.lock:
            return set(self.leading)


def lease(server: FakeApiServer) -> dict[str, Any]:
    obj = server.get(LEASES, "default", "katib-controller")
    assert obj is not None
    spec: dict[str, Any] = obj["spec"]
    return spec


def test_one_of_two_racing_candidates_leads_and_writes_the_lease(server: FakeApiServer) -> None:
    ledger = Ledger()
    api = KubeApi(server.api_client())
    a = Candidate(api, "a", ledger).start()
    b = Candidate(api, "b", ledger).start()
    try:
        wait_for(lambda: len(ledger.leaders()) == 1)
        leader = next(iter(ledger.leaders()))
        spec = lease(server)
        assert spec["holderIdentity"] == leader
        assert spec["leaseDurationSeconds"] == 5  # 4.5 s, rounded up to whole seconds
        assert spec["leaseTransitions"] == 0
        assert spec["acquireTime"].endswith("Z") and "." in spec["acquireTime"]
        first_renew = spec["renewTime"]
        wait_for(lambda: lease(server)["renewTime"] != first_renew)  # it renews
        assert lease(server)["acquireTime"] == spec["acquireTime"]
        time.sleep(5.0)  # longer than the lease: the standby must not take a renewed lease
        assert ledger.leaders() == {leader}
        assert lease(server)["holderIdentity"] == leader
        elector = (a if leader == "a" else b).elector
        standby = (b if leader == "a" else a).elector
        assert elector.is_leader() and not standby.is_leader() and standby.in_contact()
    finally:
        a.halt()
        b.halt()
    assert ledger.violations == []


def test_takeover_after_the_holder_stops_renewing(server: FakeApiServer) -> None:
    ledger = Ledger()
    api = KubeApi(server.api_client())
    a = Candidate(api, "a", ledger).start()
    wait_for(lambda: ledger.leaders() == {"a"})
    b = Candidate(api, "b", ledger).start()
    try:
        wait_for(lambda: b.elector.in_contact())
        # a's API calls now fail (a partition): it must stop leading before b may start.
        cut = time.monotonic()
        a.elector.try_acquire_or_renew = lambda: False  # type: ignore[method-assign]
        wait_for(lambda: ledger.leaders() == {"b"})
        a.thread.join(20)
        assert a.result is False  # lost, not released
        spec = lease(server)
        assert spec["holderIdentity"] == "b"
        assert spec["leaseTransitions"] == 1
        ends = {who: t for kind, who, t in ledger.history if kind == "end"}
        starts = {who: t for kind, who, t in ledger.history if kind == "start"}
        assert ends["a"] <= starts["b"]
        assert starts["b"] - cut >= FAST["lease_duration"] - 0.5  # b waited out the lease
    finally:
        a.stop.set()
        b.halt()
    assert ledger.violations == []


def test_clean_release_hands_over_without_waiting_out_the_lease(server: FakeApiServer) -> None:
    ledger = Ledger()
    api = KubeApi(server.api_client())
    slow = {"lease_duration": 60.0, "renew_deadline": 40.0, "retry_period": 0.1}
    a = Candidate(api, "a", ledger, **slow).start()
    wait_for(lambda: ledger.leaders() == {"a"})
    b = Candidate(api, "b", ledger, **slow).start()
    try:
        wait_for(lambda: b.elector.in_contact())
        a.halt()
        assert a.result is True
        wait_for(lambda: ledger.leaders() == {"b"}, timeout=30)  # far less than 60 s
        assert lease(server)["holderIdentity"] == "b"
    finally:
        b.halt()
    assert lease(server)["holderIdentity"] == ""  # b released too
    assert ledger.violations == []


def test_never_two_leaders_under_conflicts_errors_and_churn(server: FakeApiServer) -> None:
    server.faults.fail(verb="update", plural="leases", status=409, probability=0.2)
    server.faults.fail(verb="get", plural="leases", status=500, probability=0.1)
    ledger = Ledger()
    api = KubeApi(server.api_client(), retry=RetryPolicy(base=0.01, cap=0.05, deadline=0.2))
    candidates = [Candidate(api, f"c{i}", ledger).start() for i in range(3)]
    monitor_stop = threading.Event()
    overlaps: list[set[str]] = []

    def monitor() -> None:  # is_leader() of two candidates is never true at once
        while not monitor_stop.is_set():
            leaders = {c.identity for c in candidates if c.elector.is_leader()}
            if len(leaders) > 1:
                overlaps.append(leaders)
            time.sleep(0.002)

    watcher = threading.Thread(target=monitor)
    watcher.start()
    try:
        for round_ in range(2):  # the leader is cut off; another takes over
            wait_for(lambda: len(ledger.leaders()) == 1)
            leader = next(iter(ledger.leaders()))
            victim = next(c for c in candidates if c.identity == leader)
            victim.elector.try_acquire_or_renew = lambda: False  # type: ignore[method-assign]
            victim.thread.join(20)
            assert victim.result is False
            candidates.remove(victim)
            fresh = Candidate(api, f"n{round_}", ledger).start()
            candidates.append(fresh)
        wait_for(lambda: len(ledger.leaders()) == 1)
    finally:
        monitor_stop.set()
        watcher.join()
        for candidate in candidates:
            candidate.halt()
    assert ledger.violations == []
    assert overlaps == []
    assert server.faults.fired > 0


def test_bad_timing_is_rejected(server: FakeApiServer) -> None:
    api = KubeApi(server.api_client())
    with pytest.raises(ValueError, match="lease timing"):
        LeaderElector(
            api,
            name="l",
            namespace="default",
            identity="a",
            lease_duration=5,
            renew_deadline=6,
            retry_period=1,
        )
    with pytest.raises(ValueError, match="identity"):
        LeaderElector(api, name="l", namespace="default", identity="")
