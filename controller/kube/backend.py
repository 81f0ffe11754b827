"""``katib run --backend kubernetes``: the local runner's loop with trials as cluster objects.

:class:`KubernetesBackend` is a :class:`~katib.controller.backend.Backend`: the experiment's
decisions, records and results directory stay on this machine (the runner's), while each trial
runs in the cluster as the object its template names (a Job, a PyTorchJob, ...), rendered as
the operator renders it (:func:`render.run_object`: the in-pod ``katib-metrics-collector``
wrapped around the primary container reports metrics to the DB service).

* ``start`` creates the run object; ``poll`` lists the experiment's run objects (label
  ``katib.kubeflow.org/experiment``) and reads each one's outcome from the template's success
  and failure conditions, its exit code from the primary container's termination state, and
  whether the collector early-stopped it from the termination message; ``stop`` deletes the
  run object (its pods with it), as does the end of a run unless the template says
  ``retain``; ``collect`` reads the observation from the DB service;
  ``recover`` deletes what a previous run left of a trial, so it runs afresh.
* There is no Trial CR: run objects carry the experiment and trial labels instead of an owner
  reference (an owner that does not exist would have them garbage-collected at once).
* The DB service must be reachable from the pods *and* from here: pass ``--db-address`` with
  an address both can reach (the in-process DB of a local run listens on loopback, which only
  a simulated cluster on this machine can reach).
"""

from __future__ import annotations

import copy
import logging
import select
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from katib.controller.backend import Capabilities, Finished
from katib.controller.collector import Collected, Collector
from katib.controller.kube import objects as ob
from katib.controller.kube import render
from katib.controller.kube.api import AlreadyExists, KubeApi
from katib.controller.kube.conditions import Outcome, run_outcome
from katib.controller.kube.resources import PODS, Resource, resource_for
from katib.controller.spec import CollectorKind, Experiment
from katib.controller.trials import MetricValue, TrialRecord
from katib.earlystopping.rules import RuleSet

logger = logging.getLogger(__name__)

#: How long ``start`` and ``recover`` wait for a leftover run object to go (seconds).
DELETE_WAIT_SECONDS = 30.0
DB_ADDRESS_ENV = "KATIB_DB_MANAGER_ADDRESS"

KUBERNETES_CAPABILITIES = Capabilities(
    name="kubernetes",
    collector_kinds=frozenset(
        {CollectorKind.STDOUT, CollectorKind.FILE, CollectorKind.PUSH, CollectorKind.NONE}
    ),
    config_maps=False,
    early_stopping=True,
)


@dataclass
class _Running:
    trial: dict[str, Any]
    res: Resource


class KubernetesBackend:
    """Trials as cluster objects for one experiment; see the module docstring."""

    capabilities = KUBERNETES_CAPABILITIES

    def __init__(
        self,
        spec: Experiment,
        raw: Mapping[str, Any],
        collector: Collector,
        api: KubeApi,
        namespace: str,
        db_address: str,
        collector_command: Sequence[str] = ("katib-metrics-collector",),
    ) -> None:
        self.spec = spec
        self.collector = collector
        self.api = api
        self.namespace = namespace
        self.db_address = db_address
        self.collector_command = tuple(collector_command)
        # The experiment as render sees it: in our namespace, with a placeholder uid (the
        # owner references it makes are removed: see the module docstring).
        self.raw = copy.deepcopy(dict(raw))
        meta = self.raw.setdefault("metadata", {})
        meta.update(namespace=namespace, uid=meta.get("uid") or "local-run")
        self._running: dict[str, _Running] = {}

    @property
    def running(self) -> list[str]:
        """Names of the trials whose run objects are being watched."""
        return list(self._running)

    def _trial(self, trial: TrialRecord) -> dict[str, Any]:
        rules = None
        if self.spec.early_stopping is not None and trial.stop_rules is not None:
            rules = RuleSet(trial.stop_rules, trial.stop_semantics)
        body = render.trial_object(
            self.spec, self.raw, trial.name, trial.assignments, trial.labels, rules=rules
        )
        body["metadata"].pop("ownerReferences", None)
        body["metadata"]["uid"] = f"local-run-{trial.name}"  # placeholder, as for the experiment
        return body

    def recover(self, trial: TrialRecord) -> None:
        """Delete what a previous run left of ``trial`` (its run object and pods)."""
        res = _resource(self._trial(trial))
        self._delete_and_wait(res, trial.name)

    def start(self, trial: TrialRecord) -> dict[str, Any]:
        """Create ``trial``'s run object; ``ValueError`` if it cannot be rendered, ``OSError``
        if the API server refuses it."""
        body = self._trial(trial)
        res = _resource(body)
        run = render.run_object(
            body, db_address=self.db_address, collector_command=self.collector_command
        )
        run["metadata"].pop("ownerReferences", None)
        try:
            self.api.create(res, self.namespace, run)
        except AlreadyExists:
            self._delete_and_wait(res, trial.name)
            self.api.create(res, self.namespace, run)
        except Exception as exc:
            raise OSError(f"cannot create {res.kind} {trial.name}: {exc}") from exc
        self._running[trial.name] = _Running(body, res)
        return {"apiVersion": res.api_version, "kind": res.kind, "name": trial.name}

    def poll(self, timeout: float, wake: int | None = None) -> list[Finished]:
        """Wait up to ``timeout`` s (less if ``wake`` turns readable); the trials that ended."""
        if wake is not None:
            select.select([wake], [], [], timeout)
        else:
            time.sleep(timeout)
        if not self._running:
            return []
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for res in {run.res for run in self._running.values()}:
            items, _ = self.api.list(
                res, self.namespace, label_selector=f"{ob.LABEL_EXPERIMENT}={self.spec.name}"
            )
            for item in items:
                found[(res.plural, item["metadata"]["name"])] = item
        finished = []
        for name, run in list(self._running.items()):
            obj = found.get((run.res.plural, name))
            if obj is None:
                logger.warning("%s %s disappeared while it ran", run.res.kind, name)
                finished.append(self._finish(name, 1))
                continue
            outcome = _outcome(run.trial, obj)
            if outcome is not None:
                finished.append(self._ended(name, outcome))
        return finished

    def stop(
        self, names: Sequence[str], hurry: Callable[[], bool] | None = None
    ) -> list[Finished]:
        """Delete the run objects of trials still running; a trial whose run had already
        ended comes back with ``stopped=False`` and its own result."""
        results = []
        for name in names:
            run = self._running.get(name)
            if run is None:
                continue
            obj = self.api.get(run.res, self.namespace, name)
            outcome = _outcome(run.trial, obj) if obj is not None else None
            if outcome is not None:
                results.append(self._ended(name, outcome))
                continue
            self.api.delete(run.res, self.namespace, name, propagation="Background")
            results.append(self._finish(name, -signal.SIGTERM, stopped=True))
        return results

    def collect(self, finished: Finished) -> tuple[MetricValue, ...]:
        """The trial's observation from the DB service (the in-pod collector reported it)."""
        return self.collector.observation(
            finished.name, finished.collected, mark_missing=not finished.stopped
        )

    def close(self) -> None:
        """Stop every trial still running."""
        self.stop(self.running)

    # -- helpers -----------------------------------------------------------------------------

    def _ended(self, name: str, outcome: Outcome) -> Finished:
        run = self._running[name]
        trial = run.trial
        exit_code, early = self._termination(trial)
        if not self.spec.trial_template.retain:  # as the operator does, unless retainRun
            self.api.delete(run.res, self.namespace, name, propagation="Background")
        if exit_code is None:
            exit_code = 0 if outcome.succeeded else 1
        elif outcome.succeeded and not early:
            exit_code = 0  # the run's success condition is what counts
        elif not outcome.succeeded and exit_code == 0:
            exit_code = 1
        return self._finish(name, exit_code, early_stopped=early)

    def _finish(
        self, name: str, exit_code: int, stopped: bool = False, early_stopped: bool = False
    ) -> Finished:
        del self._running[name]
        return Finished(name, exit_code, Collected(None), stopped, early_stopped)

    def _termination(self, trial: Mapping[str, Any]) -> tuple[int | None, bool]:
        """The primary container's exit code and whether the collector early-stopped it."""
        spec = trial.get("spec") or {}
        labels = {
            ob.LABEL_TRIAL: trial["metadata"]["name"],
            **(spec.get("primaryPodLabels") or {}),
        }
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        pods, _ = self.api.list(PODS, self.namespace, label_selector=selector)
        container = spec.get("primaryContainerName")
        for pod in pods:
            for status in (pod.get("status") or {}).get("containerStatuses") or ():
                if status.get("name") != container:
                    continue
                terminated = (status.get("state") or {}).get("terminated")
                if isinstance(terminated, Mapping):
                    message = str(terminated.get("message", "")).strip()
                    code = terminated.get("exitCode")
                    return (
                        int(code) if isinstance(code, int) else None,
                        message == render.EARLY_STOPPED_MESSAGE,
                    )
        return None, False

    def _delete_and_wait(self, res: Resource, name: str) -> None:
        if not self.api.delete(res, self.namespace, name, propagation="Background"):
            return
        deadline = time.monotonic() + DELETE_WAIT_SECONDS
        while self.api.get(res, self.namespace, name) is not None:
            if time.monotonic() > deadline:
                raise OSError(f"{res.kind} {name} is still being deleted")
            time.sleep(0.1)


class KubernetesBackendFactory:
    """What ``katib run --backend kubernetes`` gives the runner: a
    :class:`~katib.controller.backend.BackendFactory` bound to a cluster and namespace."""

    capabilities = KUBERNETES_CAPABILITIES

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        raw: Mapping[str, Any],
        collector_command: Sequence[str] = ("katib-metrics-collector",),
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.raw = raw
        self.collector_command = tuple(collector_command)

    def __call__(
        self,
        spec: Experiment,
        results_dir: Path,
        collector: Collector,
        env: dict[str, str] | None = None,
        experiment_dir: Path | None = None,
    ) -> KubernetesBackend:
        """A backend for ``spec``; the DB address is the runner's (``env``)."""
        db_address = (env or {}).get(DB_ADDRESS_ENV, "")
        if not db_address:
            raise ValueError(f"the kubernetes backend needs {DB_ADDRESS_ENV} from the runner")
        return KubernetesBackend(
            spec,
            self.raw,
            collector,
            self.api,
            self.namespace,
            db_address,
            self.collector_command,
        )


def _resource(trial: Mapping[str, Any]) -> Resource:
    run_spec = (trial.get("spec") or {}).get("runSpec") or {}
    return resource_for(str(run_spec.get("apiVersion", "")), str(run_spec.get("kind", "")))


def _outcome(trial: Mapping[str, Any], obj: Mapping[str, Any]) -> Outcome | None:
    spec = trial.get("spec") or {}
    return run_outcome(
        obj, str(spec.get("successCondition", "")), str(spec.get("failureCondition", ""))
    )
