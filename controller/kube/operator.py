"""The operator behind ``katib-controller``: informers feed a work queue, workers reconcile.

Four informers keep a cache of Experiments, Trials, Suggestions and the Jobs the operator made
(label ``katib.kubeflow.org/trial``); every change enqueues the object it concerns (a Trial
also enqueues its Experiment; a Suggestion its Experiment; a Job its Trial). Keys are
``Experiment/<namespace>/<name>`` and ``Trial/<namespace>/<name>``; the queue never hands one
key to two workers at once and backs a failing key off exponentially. Run objects of other
kinds (PyTorchJob, TFJob, ...) are not watched: their Trials ask to be looked at again every
:data:`~katib.controller.kube.reconciler.RUN_POLL_SECONDS`. Every object is enqueued again every
``resync_seconds``, so nothing depends on an event arriving.

The operator holds no state that matters across restarts: everything it decided is in the
objects (see :mod:`katib.controller.kube.reconciler`), so a restarted or newly elected replica
continues where the last one stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from katib.controller.kube import objects as ob
from katib.controller.kube.api import KubeApi
from katib.controller.kube.config import OperatorConfig
from katib.controller.kube.informer import Informer
from katib.controller.kube.reconciler import Reconciler, Services
from katib.controller.kube.resources import EXPERIMENTS, JOBS, SUGGESTIONS, TRIALS, Resource
from katib.controller.kube.workqueue import WorkQueue

logger = logging.getLogger(__name__)

EXPERIMENT, TRIAL = "Experiment", "Trial"
#: How long a worker waits for a key before it looks at the stop flag again (seconds).
_GET_TIMEOUT = 0.2


def key(kind: str, namespace: str, name: str) -> str:
    """The work-queue key of an object."""
    return f"{kind}/{namespace}/{name}"


class _CachedReads:
    """:class:`~katib.controller.kube.reconciler.Reads` from the informers' caches; run
    objects of kinds without an informer are read from the API server."""

    def __init__(self, api: KubeApi, trials: Informer, jobs: Informer) -> None:
        self.api = api
        self._trials = trials
        self._jobs = jobs

    def trials(self, namespace: str, experiment: str) -> list[dict[str, Any]]:
        return self._trials.list(namespace, {ob.LABEL_EXPERIMENT: experiment})

    def run_object(self, res: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        if res == JOBS:
            return self._jobs.get(namespace, name)
        return self.api.get(res, namespace, name)


class Operator:
    """Reconcile Katib Experiments in ``config.namespace`` (all namespaces if ``None``)."""

    def __init__(self, api: KubeApi, config: OperatorConfig) -> None:
        self.api = api
        self.config = config
        self.queue = WorkQueue()
        self._stop = threading.Event()
        namespace = config.namespace
        self.experiments = Informer(api, EXPERIMENTS, namespace, on_event=self._on_experiment)
        self.trials = Informer(api, TRIALS, namespace, on_event=self._on_trial)
        self.suggestions = Informer(api, SUGGESTIONS, namespace, on_event=self._on_owned)
        self.jobs = Informer(
            api, JOBS, namespace, label_selector=ob.LABEL_TRIAL, on_event=self._on_run
        )
        self.informers = (self.experiments, self.trials, self.suggestions, self.jobs)
        self.services = Services(config, self._stop.is_set)
        self.reconciler = Reconciler(
            api, config, _CachedReads(api, self.trials, self.jobs), self.services
        )

    def has_synced(self) -> bool:
        """Whether every informer has listed once (readiness)."""
        return all(informer.has_synced() for informer in self.informers)

    def run(self, stop: threading.Event) -> None:
        """Watch and reconcile until ``stop`` is set."""
        threads = [
            threading.Thread(target=i.run, args=(stop,), name=f"informer-{i_name}", daemon=True)
            for i, i_name in zip(
                self.informers, ("experiments", "trials", "suggestions", "jobs"), strict=True
            )
        ]
        for thread in threads:
            thread.start()
        while not self.has_synced() and not stop.wait(0.05):
            pass
        workers = [
            threading.Thread(target=self._work, args=(stop,), name=f"worker-{n}", daemon=True)
            for n in range(self.config.workers)
        ]
        for thread in workers:
            thread.start()
        logger.info("operator running with %d workers", len(workers))
        next_resync = time.monotonic() + self.config.resync_seconds
        while not stop.wait(min(1.0, max(0.0, next_resync - time.monotonic()))):
            if time.monotonic() >= next_resync:
                self.resync()
                next_resync = time.monotonic() + self.config.resync_seconds
        self._stop.set()
        self.queue.shutdown()
        for thread in workers + threads:
            thread.join(timeout=10)
        self.services.close()

    def resync(self) -> None:
        """Enqueue every cached Experiment and Trial."""
        for obj in self.experiments.list():
            self._enqueue(EXPERIMENT, obj)
        for obj in self.trials.list():
            self._enqueue(TRIAL, obj)

    # -- events ----------------------------------------------------------------------------------

    def _enqueue(self, kind: str, obj: Mapping[str, Any], name: str | None = None) -> None:
        meta = obj.get("metadata") or {}
        target = name or meta.get("name")
        if target and meta.get("namespace"):
            self.queue.add(key(kind, str(meta["namespace"]), str(target)))

    def _on_experiment(self, event: str, obj: dict[str, Any]) -> None:
        self._enqueue(EXPERIMENT, obj)

    def _on_trial(self, event: str, obj: dict[str, Any]) -> None:
        if event != "DELETED":
            self._enqueue(TRIAL, obj)
        experiment = ((obj.get("metadata") or {}).get("labels") or {}).get(ob.LABEL_EXPERIMENT)
        if experiment:
            self._enqueue(EXPERIMENT, obj, experiment)

    def _on_owned(self, event: str, obj: dict[str, Any]) -> None:
        owner = ob.owned_by(obj, EXPERIMENT)
        if owner:
            self._enqueue(EXPERIMENT, obj, owner)

    def _on_run(self, event: str, obj: dict[str, Any]) -> None:
        owner = ob.owned_by(obj, TRIAL)
        if owner:
            self._enqueue(TRIAL, obj, owner)

    # -- workers ---------------------------------------------------------------------------------

    def _work(self, stop: threading.Event) -> None:
        handlers: dict[str, Callable[[str, str], float | None]] = {
            EXPERIMENT: self.reconciler.experiment,
            TRIAL: self.reconciler.trial,
        }
        while not stop.is_set():
            item = self.queue.get(_GET_TIMEOUT)
            if item is None:
                continue
            try:
                kind, namespace, name = item.split("/", 2)
                delay = handlers[kind](namespace, name)
            except Exception as exc:
                if stop.is_set():
                    self.queue.done(item)
                    return
                logger.warning("reconcile %s failed (retrying with back-off): %s", item, exc)
                logger.debug("reconcile %s failed", item, exc_info=True)
                self.queue.retry(item)
                self.queue.done(item)
                continue
            self.queue.forget(item)
            if delay is not None:
                self.queue.add(item, delay)
            self.queue.done(item)
