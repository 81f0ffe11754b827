"""Kubernetes operator at scale: ``katib-bench kube``.

The real :class:`~katib.controller.kube.operator.Operator` (informers, work queue, reconcile
workers, the real ``kubernetes`` client over HTTP) runs against the fake API server
(:mod:`katib.controller.kube.fake`) with Katib's CRDs. Trials are Jobs, but no process runs:
:class:`FastJobs`, an in-process job simulator, sees each Job appear, waits a random short
delay, reports the objective straight to a DB manager on loopback (``ReportObservationLog``) and
marks the Job ``Complete``. The suggestion service (random search) and the DB manager (SQLite)
are real gRPC servers on loopback in this process. So the figures are the operator's own cost:

* trials/s: trials completed per second of wall time, the Experiment's creation to its
  completion;
* Job-created → Trial-completed latency (p50, p90): from the Job's ADDED event to the Trial's
  ``Succeeded`` condition, i.e. how long the operator takes to notice a finished run, read its
  metrics and write the Trial (the simulated run time is subtracted);
* reconcile pass time (p50, p90), per Experiment pass and per Trial pass;
* API calls per trial by verb, as the operator's :class:`~katib.controller.kube.api.KubeApi`
  counted them (watches are long-lived and counted once per stream).

Usage::

    katib-bench kube                                   # 1000 trials x 1000 parallel, 10000 x 1000
    katib-bench kube --runs 200:50 --workers 8 --out results/kube
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from katib.controller.kube.api import KubeApi
from katib.controller.kube.config import OperatorConfig
from katib.controller.kube.fake.server import FakeApiServer
from katib.controller.kube.fake.store import Event, StatusError, Store, clone, now
from katib.controller.kube.operator import Operator
from katib.controller.kube.resources import EXPERIMENTS, JOBS, SUGGESTIONS, TRIALS

NAMESPACE = "bench"
_CRDS = Path(__file__).resolve().parents[1] / "manifests" / "base" / "crds"


def experiment(name: str, trials: int, parallel: int) -> dict[str, Any]:
    """A random-search Experiment whose trial is a Job (never run: :class:`FastJobs` fakes it)."""
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Experiment",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "objective": {"type": "minimize", "objectiveMetricName": "loss"},
            "algorithm": {"algorithmName": "random"},
            "parallelTrialCount": parallel,
            "maxTrialCount": trials,
            "maxFailedTrialCount": trials,
            "parameters": [
                {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}}
            ],
            "trialTemplate": {
                "primaryContainerName": "main",
                "trialParameters": [{"name": "x", "reference": "x"}],
                "trialSpec": {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "spec": {
                        "backoffLimit": 0,
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "containers": [
                                    {
                                        "name": "main",
                                        "image": "train",
                                        "command": ["train", "--x=${trialParameters.x}"],
                                    }
                                ],
                            }
                        },
                    },
                },
            },
        },
    }


def _true(obj: dict[str, Any], *types: str) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or ()
    return any(c.get("type") in types and c.get("status") == "True" for c in conditions)


class _Follower:
    """Reads the store's event history in a thread, as a watch would, without HTTP."""

    def __init__(self, store: Store, name: str) -> None:
        self.store = store
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        with self.store.changed:
            self._cursor = self.store.rv
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self.store.changed:
            self.store.changed.notify_all()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self.store.changed:
                try:
                    events = self.store.events_after(self._cursor)
                except StatusError:
                    self._cursor = self.store.rv
                    continue
                if not events:
                    self.store.changed.wait(0.2)
                    continue
            for event in events:
                self._cursor = event.rv
                self.handle(event)

    def handle(self, event: Event) -> None:
        raise NotImplementedError


class FastJobs(_Follower):
    """Completes each new Job after a random delay in ``delay`` seconds, its objective value
    reported to the DB manager first, as the in-pod collector would. No pods, no processes."""

    def __init__(
        self,
        server: FakeApiServer,
        db_address: str,
        *,
        delay: tuple[float, float] = (0.05, 0.5),
        metric: str = "loss",
        seed: int = 0,
    ) -> None:
        super().__init__(server.store, "fast-jobs")
        from katib.db.client import DBClient

        self.db = DBClient(db_address)
        self.delay = delay
        self.metric = metric
        self.rng = random.Random(seed)
        self.created: dict[str, float] = {}  # trial name -> when its Job appeared
        self.run_seconds: dict[str, float] = {}  # trial name -> simulated run time
        self._jobs = self.store.kind_of(JOBS)
        self._due: list[tuple[float, str, str]] = []
        self._wake = threading.Condition()
        self._finisher = threading.Thread(
            target=self._finish_loop, name="fast-jobs-finish", daemon=True
        )

    def start(self) -> None:
        super().start()
        self._finisher.start()

    def stop(self) -> None:
        super().stop()
        with self._wake:
            self._wake.notify_all()
        self._finisher.join(10)
        self.db.close()

    def handle(self, event: Event) -> None:
        if event.key != ("batch", "jobs") or event.type != "ADDED":
            return
        meta = event.obj["metadata"]
        trial = (meta.get("labels") or {}).get("katib.kubeflow.org/trial", meta["name"])
        seconds = self.rng.uniform(*self.delay)
        self.created[trial] = time.monotonic()
        self.run_seconds[trial] = seconds
        with self._wake:
            heapq.heappush(
                self._due, (time.monotonic() + seconds, meta["namespace"], meta["name"])
            )
            self._wake.notify()

    def _finish_loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                if not self._due or self._due[0][0] > time.monotonic():
                    wait = self._due[0][0] - time.monotonic() if self._due else 0.2
                    self._wake.wait(max(0.0, min(wait, 0.2)))
                    continue
                _, namespace, name = heapq.heappop(self._due)
            self._complete(namespace, name)

    def _complete(self, namespace: str, name: str) -> None:
        with self.store.changed:
            try:
                job = self.store.get(self._jobs, namespace, name)
            except StatusError:
                return  # deleted meanwhile (the experiment finished)
        labels = job["metadata"].get("labels") or {}
        trial = labels.get("katib.kubeflow.org/trial", name)
        self.db.report(trial, [(None, self.metric, f"{self.rng.random():.6f}")])
        stamp = now()
        status = {
            "startTime": stamp,
            "completionTime": stamp,
            "active": 0,
            "succeeded": 1,
            "failed": 0,
            "conditions": [
                {
                    "type": "Complete",
                    "status": "True",
                    "lastProbeTime": stamp,
                    "lastTransitionTime": stamp,
                }
            ],
        }
        with self.store.changed:
            try:
                current = self.store.get(self._jobs, namespace, name)
                self.store.update(
                    self._jobs,
                    namespace,
                    name,
                    dict(clone(current), status=status),
                    subresource="status",
                )
            except StatusError:
                return


class _Completions(_Follower):
    """When each Trial completed, and when the Experiment did."""

    def __init__(self, store: Store) -> None:
        super().__init__(store, "bench-completions")
        self.trials: dict[str, float] = {}
        self.experiment_done = threading.Event()

    def handle(self, event: Event) -> None:
        if event.type == "DELETED":
            return
        if event.key == ("kubeflow.org", "trials"):
            name = event.obj["metadata"]["name"]
            if name not in self.trials and _true(event.obj, "Succeeded", "Failed"):
                self.trials[name] = time.monotonic()
        elif event.key == ("kubeflow.org", "experiments") and _true(
            event.obj, "Succeeded", "Failed"
        ):
            self.experiment_done.set()


class _TimedReconciler:
    """The operator's reconciler with each pass timed (wall seconds per call, by kind)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.passes: dict[str, list[float]] = {"experiment": [], "trial": []}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def experiment(self, namespace: str, name: str) -> float | None:
        return self._timed("experiment", self._inner.experiment, namespace, name)

    def trial(self, namespace: str, name: str) -> float | None:
        return self._timed("trial", self._inner.trial, namespace, name)

    def _timed(self, kind: str, call: Any, namespace: str, name: str) -> float | None:
        start = time.perf_counter()
        try:
            return call(namespace, name)  # type: ignore[no-any-return]
        finally:
            self.passes[kind].append(time.perf_counter() - start)


@dataclass
class KubeBenchResult:
    """The figures of one run (seconds unless named otherwise)."""

    trials: int
    parallel: int
    workers: int
    completed: int
    wall_s: float
    trials_per_s: float
    latency_p50: float
    latency_p90: float
    reconcile_experiment_p50: float
    reconcile_experiment_p90: float
    reconcile_trial_p50: float
    reconcile_trial_p90: float
    passes: dict[str, int]
    calls_per_trial: dict[str, float]
    calls_by_resource: dict[str, int] = field(default_factory=dict)
    http_requests: int = 0
    server_ms_per_trial: float = 0.0  # wall time in the fake server's handlers, GIL waits too


def _pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


@contextlib.contextmanager
def _services(tmp: Path) -> Iterator[tuple[str, str]]:
    from katib.api.server import start
    from katib.db.server import build_service
    from katib.db.store import open_store
    from katib.suggestion.server import services

    store = open_store(f"sqlite:///{tmp / 'observations.db'}")
    suggestion = start(services(["random"]), host="127.0.0.1", port=0)
    db = start([build_service(store)], host="127.0.0.1", port=0)
    try:
        yield suggestion.address, db.address
    finally:
        suggestion.stop(grace=0)
        db.stop(grace=0)
        store.close()


def _register_crds(server: FakeApiServer) -> None:
    docs = [
        doc
        for path in sorted(_CRDS.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
    ]
    if docs:
        server.register_crds(docs)
    else:  # an installed package without the manifests: no schemas, same paths
        for res in (EXPERIMENTS, TRIALS, SUGGESTIONS):
            server.register(res)


def run_bench(
    trials: int,
    parallel: int,
    *,
    workers: int = 4,
    delay: tuple[float, float] = (0.05, 0.5),
    timeout: float = 3600.0,
    seed: int = 0,
    progress: bool = False,
) -> KubeBenchResult:
    """Run one Experiment of ``trials`` trials, ``parallel`` at a time, and measure it."""
    if trials < 1 or parallel < 1:
        raise ValueError(f"trials and parallel must be at least 1, got {trials}:{parallel}")
    with (
        tempfile.TemporaryDirectory(prefix="katib-bench-kube-") as tmp,
        _services(Path(tmp)) as (suggestion, db),
    ):
        server = FakeApiServer(namespaces=("default", NAMESPACE), bookmark_interval=10.0)
        _register_crds(server)
        with server:
            jobs = FastJobs(server, db, delay=delay, seed=seed)
            done = _Completions(server.store)
            api = KubeApi(server.api_client())
            config = OperatorConfig(
                namespace=NAMESPACE, suggestion_address=suggestion, db_address=db, workers=workers
            )
            operator = Operator(api, config)
            timed = _TimedReconciler(operator.reconciler)
            operator.reconciler = timed  # type: ignore[assignment]
            stop = threading.Event()
            thread = threading.Thread(
                target=operator.run, args=(stop,), name="operator", daemon=True
            )
            jobs.start()
            done.start()
            thread.start()
            try:
                deadline = time.monotonic() + 60
                while not operator.has_synced():
                    if time.monotonic() > deadline:
                        raise RuntimeError("the operator's informers did not sync in 60 s")
                    time.sleep(0.05)
                requests_before = len(server.requests)
                busy_before = server.busy_seconds
                calls_before = Counter(api.calls)
                start = time.monotonic()
                KubeApi(server.api_client()).create(
                    EXPERIMENTS, NAMESPACE, experiment("scale", trials, parallel)
                )
                while not done.experiment_done.wait(
                    min(10.0, max(0.0, start + timeout - time.monotonic()))
                ):
                    if time.monotonic() >= start + timeout:
                        break
                    if progress:
                        print(
                            f"  ... {len(done.trials)}/{trials} trials completed after "
                            f"{time.monotonic() - start:.0f} s",
                            file=sys.stderr,
                            flush=True,
                        )
                if not done.experiment_done.is_set():
                    raise RuntimeError(
                        f"the experiment did not finish in {timeout} s "
                        f"({len(done.trials)} of {trials} trials completed)"
                    )
                wall = time.monotonic() - start
            finally:
                stop.set()
                server.faults.drop_watches()  # the informers see the stop now, not at a bookmark
                thread.join(30)
                done.stop()
                jobs.stop()
            calls = Counter(api.calls) - calls_before
            http_requests = len(server.requests) - requests_before
            server_seconds = server.busy_seconds - busy_before
    latencies = [
        done.trials[t] - jobs.created[t] - jobs.run_seconds[t]
        for t in done.trials
        if t in jobs.created
    ]
    by_verb: Counter[str] = Counter()
    for (verb, _), count in calls.items():
        by_verb[verb] += count
    completed = len(done.trials)
    return KubeBenchResult(
        trials=trials,
        parallel=parallel,
        workers=workers,
        completed=completed,
        wall_s=wall,
        trials_per_s=completed / wall if wall > 0 else float("nan"),
        latency_p50=_pct(latencies, 50),
        latency_p90=_pct(latencies, 90),
        reconcile_experiment_p50=_pct(timed.passes["experiment"], 50),
        reconcile_experiment_p90=_pct(timed.passes["experiment"], 90),
        reconcile_trial_p50=_pct(timed.passes["trial"], 50),
        reconcile_trial_p90=_pct(timed.passes["trial"], 90),
        passes={k: len(v) for k, v in timed.passes.items()},
        calls_per_trial={
            verb: count / max(completed, 1) for verb, count in sorted(by_verb.items())
        },
        calls_by_resource={
            f"{verb} {plural}": count for (verb, plural), count in sorted(calls.items())
        },
        http_requests=http_requests,
        server_ms_per_trial=1000.0 * server_seconds / max(completed, 1),
    )


def format_result(result: KubeBenchResult) -> str:
    """The figures of one run, for people."""
    ms = 1000.0
    verbs = ", ".join(f"{verb} {n:.2f}" for verb, n in result.calls_per_trial.items())
    return "\n".join(
        [
            f"{result.trials} trials, parallelTrialCount {result.parallel}, "
            f"{result.workers} workers: {result.completed} completed in {result.wall_s:.1f} s "
            f"= {result.trials_per_s:.1f} trials/s",
            f"  Job created -> Trial completed (run time excluded): "
            f"p50 {result.latency_p50 * ms:.0f} ms, p90 {result.latency_p90 * ms:.0f} ms",
            f"  reconcile pass: experiment p50 {result.reconcile_experiment_p50 * ms:.1f} ms, "
            f"p90 {result.reconcile_experiment_p90 * ms:.1f} ms ({result.passes['experiment']} "
            f"passes); trial p50 {result.reconcile_trial_p50 * ms:.1f} ms, "
            f"p90 {result.reconcile_trial_p90 * ms:.1f} ms ({result.passes['trial']} passes)",
            f"  API calls per trial: {verbs} "
            f"(total {sum(result.calls_per_trial.values()):.2f}; "
            f"{result.http_requests} HTTP requests in all)",
            f"  wall time in the fake API server's handlers (GIL waits included): "
            f"{result.server_ms_per_trial:.1f} ms per trial",
        ]
    )


def _runs(text: str) -> list[tuple[int, int]]:
    runs = []
    for item in text.split(","):
        trials, _, parallel = item.strip().partition(":")
        if not trials.isdigit() or not parallel.isdigit():
            raise ValueError(f"--runs: expected TRIALS:PARALLEL items, got {item!r}")
        runs.append((int(trials), int(parallel)))
    return runs


def cmd_kube(args: argparse.Namespace) -> int:
    """``katib-bench kube``: print the figures of each run; JSON to ``--out`` if given."""
    low, _, high = args.delay.partition(":")
    delay = (float(low), float(high or low))
    results = []
    for trials, parallel in _runs(args.runs):
        result = run_bench(
            trials,
            parallel,
            workers=args.workers,
            delay=delay,
            timeout=args.timeout,
            seed=args.seed,
            progress=not args.quiet,
        )
        print(format_result(result), flush=True)
        results.append(asdict(result))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "kube.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``kube`` to ``katib-bench``'s parser."""
    kube = sub.add_parser("kube", help="the Kubernetes operator at scale, on the fake API server")
    kube.add_argument(
        "--runs",
        default="1000:1000,10000:1000",
        help="TRIALS:PARALLEL experiments to run, comma-separated (default 1000:1000,10000:1000)",
    )
    kube.add_argument("--workers", type=int, default=4, help="reconcile workers (default 4)")
    kube.add_argument(
        "--delay",
        default="0.05:0.5",
        help="simulated run time, uniform MIN:MAX seconds (default 0.05:0.5)",
    )
    kube.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="seconds an experiment may take (default 3600)",
    )
    kube.add_argument("--seed", type=int, default=0)
    kube.add_argument("--out", help="directory for kube.json")
    kube.add_argument("--quiet", action="store_true", help="no progress lines")
    kube.set_defaults(func=cmd_kube)
