"""Reconcile one Experiment or one Trial against the cluster: the operator's I/O half.

The decisions are :func:`katib.controller.reconcile.reconcile`'s, the same as a local run's;
this module reads the objects, asks the services, and writes what the decision says.

**Experiment** (:meth:`Reconciler.experiment`): admission (an invalid Experiment is Failed with
every problem in its message; a template from a ConfigMap is read and admitted as if it were
inline), then its Suggestion (same name, owned by it), whose status holds
every assignment the suggestion service returned, in order. The trial records are the Trials
that exist plus the persisted assignments not made into Trials yet (queued, Created). A new
batch of suggestions is written into the Suggestion's status *before* any Trial is made from
it, and the write is refused if the status changed since it was read; Trials are then created
under the persisted names (an existing one counts as made). So a controller killed at any point
neither duplicates a trial (names are fixed before any Trial exists) nor loses one (a persisted
assignment without a Trial is made on the next pass). A Trial that exists counts as running
for the decision's parallelism, whatever its own status says yet. When the experiment
completes, its trials still running are Killed and their run objects deleted (a run that
already finished keeps its result).

**Trial** (:meth:`Reconciler.trial`): its run object (:func:`render.run_object`, owned by the
Trial) is created once; the run's outcome comes from the Trial's success and failure
conditions (:func:`conditions.run_outcome`), its observation from the DB service, folded by
the objective's strategies. A succeeded run with no objective value yet is looked at again
for up to ``metrics_grace_seconds`` (the collector may still be reporting), then the trial is
MetricsUnavailable. The finalizer ``clean-metrics-in-db`` deletes the observation log when the
Trial is deleted. A completed trial's run object is deleted unless ``retainRun``.

Every status write is a change function applied to the copy just read and written with its
``resourceVersion``; on a conflict :meth:`KubeApi.update_status` reads, changes and writes again
(bounded). The change functions that never moves a completed trial or experiment back.
Errors propagate: the operator's work queue retries the key with exponential back-off.
"""

from __future__ import annotations

import copy
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from katib.api.errors import InvalidArgument, KatibError
from katib.controller import reconcile as rec
from katib.controller.earlystop import EarlyStopping
from katib.controller.kube import objects as ob
from katib.controller.kube import render
from katib.controller.kube.admission import load_with_template
from katib.controller.kube.api import AlreadyExists, Conflict, Invalid, KubeApi, NotFound
from katib.controller.kube.conditions import run_outcome
from katib.controller.kube.config import OperatorConfig
from katib.controller.kube.resources import (
    EVENTS,
    EXPERIMENTS,
    SUGGESTIONS,
    TRIALS,
    Resource,
    resource_for,
)
from katib.controller.replies import check_reply, resource_parameter
from katib.controller.services import ObservationLog, Suggestions
from katib.controller.spec import CollectorKind, Experiment
from katib.controller.trials import (
    UNAVAILABLE,
    LogEntry,
    MetricValue,
    ObservationSummary,
    TrialCondition,
    TrialRecord,
    new_trial_name,
)
from katib.controller.validation import load_objective
from katib.earlystopping.rules import RuleSet

logger = logging.getLogger(__name__)

#: How soon a trial whose run kind has no watch is looked at again (seconds).
RUN_POLL_SECONDS = 2.0
#: Trials an experiment pass creates at once.
CREATE_CONCURRENCY = 4
#: How soon a succeeded trial without its objective is looked at again (seconds).
METRICS_RETRY_SECONDS = 0.5


def now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


class StaleSuggestion(RuntimeError):
    """The Suggestion's assignments changed since they were read: reconcile again."""


class Reads(Protocol):
    """Where the reconciler reads the objects it does not write (an informer cache)."""

    def trials(self, namespace: str, experiment: str) -> list[dict[str, Any]]:
        """The Trials labelled with ``experiment``."""
        ...

    def run_object(self, res: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        """A trial's run object, if it exists."""
        ...


class ApiReads:
    """:class:`Reads` straight from the API server (no cache)."""

    def __init__(self, api: KubeApi) -> None:
        self.api = api

    def trials(self, namespace: str, experiment: str) -> list[dict[str, Any]]:
        """The Trials labelled with ``experiment``."""
        items, _ = self.api.list(
            TRIALS, namespace, label_selector=f"{ob.LABEL_EXPERIMENT}={experiment}"
        )
        return items

    def run_object(self, res: Resource, namespace: str, name: str) -> dict[str, Any] | None:
        """A trial's run object, if it exists."""
        return self.api.get(res, namespace, name)


class Services:
    """Clients of the suggestion, early-stopping and DB services, made on first use and
    shared by the operator's workers (gRPC channels are thread-safe)."""

    def __init__(self, config: OperatorConfig, cancelled: Callable[[], bool]) -> None:
        self.config = config
        self.cancelled = cancelled
        self._suggestions: dict[str, Suggestions] = {}
        self._early: EarlyStopping | None = None
        self._db: ObservationLog | None = None
        self._lock = threading.Lock()

    def suggestions(self, algorithm: str) -> Suggestions:
        """The suggestion service that runs ``algorithm``."""
        address = self.config.suggestion_for(algorithm)
        with self._lock:
            client = self._suggestions.get(address)
            if client is None:
                client = self._suggestions[address] = Suggestions(address, self.cancelled)
            return client

    def early_stopping(self) -> EarlyStopping:
        """The early-stopping service."""
        with self._lock:
            if self._early is None:
                self._early = EarlyStopping(self.config.earlystopping_address, self.cancelled)
            return self._early

    @property
    def db(self) -> ObservationLog:
        """The DB manager."""
        with self._lock:
            if self._db is None:
                self._db = ObservationLog(self.config.db_address)
            return self._db

    def close(self) -> None:
        """Close every channel."""
        with self._lock:
            for client in self._suggestions.values():
                client.close()
            self._suggestions.clear()
            if self._early is not None:
                self._early.close()
                self._early = None
            if self._db is not None:
                self._db.close()
                self._db = None


class Reconciler:
    """Reconciles Experiments and Trials (see the module docstring); thread-safe as long as
    no two threads reconcile the same object at once (the work queue's promise)."""

    def __init__(
        self,
        api: KubeApi,
        config: OperatorConfig,
        reads: Reads | None = None,
        services: Services | None = None,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self.api = api
        self.config = config
        self.reads = reads or ApiReads(api)
        self.services = services or Services(config, lambda: False)
        self.clock = clock
        #: Per experiment uid: completed-trial count at which the service answered short
        #: (``SuggestionState.waiting_at``). Kept in memory only: losing it costs one extra
        #: GetSuggestions call after a restart, never a trial.
        self._waiting: dict[str, int] = {}
        #: Per trial uid: when its run was first seen succeeded without an objective value.
        self._awaiting_metrics: dict[str, float] = {}

    # -- experiments ---------------------------------------------------------------------------

    def experiment(self, namespace: str, name: str) -> float | None:
        """Reconcile one Experiment; returns seconds until it wants another look, if any."""
        exp = self.api.get(EXPERIMENTS, namespace, name)
        if exp is None or exp["metadata"].get("deletionTimestamp"):
            return None
        spec = self._admit(exp)
        if spec is None:
            return None
        if not (exp.get("status") or {}).get("conditions"):
            stamp = self.clock()
            exp = (
                self._write_experiment(exp, lambda status: ob.experiment_created(status, stamp))
                or exp
            )
            self.event(exp, "Normal", rec.Reason.CREATED, f"Experiment {name} is created")
        condition, reason, _ = ob.experiment_condition(exp)
        view = ob.read_suggestion(self._suggestion(exp, spec))
        existing = {t["metadata"]["name"]: t for t in self.reads.trials(namespace, name)}
        records = _records(view, existing)
        if condition in (rec.Condition.SUCCEEDED, rec.Condition.FAILED):
            ran = sum(1 for r in records if r.condition.completed)
            if not rec.can_restart(spec, condition, reason, ran):
                # Done: stop what still runs, keep the counts current (a trial whose run had
                # finished when the experiment did gets its result afterwards).
                records = self._stop_trials(spec, existing, records, condition)
                self._write_status(exp, _final(spec, exp, records), records)
                return None
            stamp = self.clock()
            exp = (
                self._write_experiment(exp, lambda status: ob.experiment_restarting(status, stamp))
                or exp
            )
            self.event(exp, "Normal", rec.Reason.RESTARTING, "Experiment is restarting")
        decision, records = self._decide(exp, spec, view, records, existing)
        by_name = {r.name: r for r in records}
        to_make = [by_name[n] for n in decision.start if n not in existing]
        if to_make:  # a few at a time: a large batch is not made one round trip after another
            with ThreadPoolExecutor(min(CREATE_CONCURRENCY, len(to_make))) as pool:
                made = pool.map(lambda r: self._create_trial(exp, spec, r), to_make)
                for record, trial in zip(to_make, made, strict=True):
                    existing[record.name] = trial
        self._write_status(exp, decision, records)
        return None

    def _admit(self, exp: dict[str, Any]) -> Experiment | None:
        """The validated experiment; ``None`` (and the experiment Failed) if it is invalid."""
        try:
            spec = load_with_template(self.api, exp)
        except InvalidArgument as exc:
            self._invalid(exp, exc.problems or [str(exc)])
            return None
        return spec

    def _decide(
        self,
        exp: Mapping[str, Any],
        spec: Experiment,
        view: ob.SuggestionView,
        records: list[TrialRecord],
        existing: Mapping[str, dict[str, Any]],
    ) -> tuple[rec.Decision, list[TrialRecord]]:
        """Reconcile until the decision needs nothing more from the services: rules fetched,
        suggestions persisted; a completed experiment's running trials are stopped."""
        uid = str(exp["metadata"].get("uid", ""))
        state = replace(view.state, waiting_at=self._waiting.get(uid))
        while True:
            decision = rec.reconcile(spec, _launch_view(records, existing), state)
            if decision.completed:
                return decision, self._stop_trials(spec, existing, records, decision.condition)
            if decision.fetch_rules:
                records, state = self._fetch_rules(
                    spec, view, records, state, decision.fetch_rules
                )
                continue
            if not decision.request:
                return decision, records
            view, records, state, got = self._suggest(spec, view, records, state, decision.request)
            if state.waiting_at is None:
                self._waiting.pop(uid, None)
            else:
                self._waiting[uid] = state.waiting_at
            if not (got or state.failed_message or state.exhausted):
                return decision, records

    def _invalid(self, exp: dict[str, Any], problems: Sequence[str]) -> None:
        message = "Experiment is invalid: " + "; ".join(problems)
        if ob.condition(exp, rec.Condition.FAILED) is not None:
            return
        stamp = self.clock()
        self._write_experiment(exp, lambda status: ob.experiment_failed(status, message, stamp))
        self.event(exp, "Warning", "ExperimentInvalid", message)
        logger.warning(
            "%s/%s: %s", exp["metadata"].get("namespace"), exp["metadata"]["name"], message
        )

    def _write_experiment(
        self, exp: Mapping[str, Any], change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any] | None:
        def mutate(obj: dict[str, Any]) -> bool:
            status = obj.get("status") or {}
            new = change(status)
            if new == status:
                return False
            new["lastReconcileTime"] = ob.format_time(self.clock())
            obj["status"] = new
            return True

        return self._update_status(EXPERIMENTS, exp, mutate)

    def _write_status(
        self, exp: Mapping[str, Any], decision: rec.Decision, records: Sequence[TrialRecord]
    ) -> None:
        """The experiment's status after ``decision``; an event when it completes."""
        stamp = self.clock()
        final = replace(decision, counts=rec.Counts.of(records))
        completed_before = ob.condition(exp, decision.condition) is not None

        def change(status: dict[str, Any]) -> dict[str, Any]:
            current = ob.experiment_condition({"status": status})[0]
            if current in (rec.Condition.SUCCEEDED, rec.Condition.FAILED) and not final.completed:
                return status  # completed meanwhile (another worker's pass): never go back
            return ob.experiment_status(status, final, records, stamp)

        written = self._write_experiment(exp, change)
        if final.completed and not completed_before and written is not None:
            kind = "Normal" if final.condition is rec.Condition.SUCCEEDED else "Warning"
            self.event(written, kind, final.reason, final.message)

    def _suggestion(self, exp: Mapping[str, Any], spec: Experiment) -> dict[str, Any]:
        """The experiment's Suggestion, created if missing (read fresh: it is the record of
        what was suggested, and a stale copy could ask for a batch twice)."""
        found = self.api.get(SUGGESTIONS, spec.namespace, spec.name)
        if found is not None:
            return found
        try:
            return self.api.create(SUGGESTIONS, spec.namespace, ob.suggestion_object(exp, spec))
        except AlreadyExists:
            found = self.api.get(SUGGESTIONS, spec.namespace, spec.name)
            if found is None:
                raise StaleSuggestion(f"Suggestion {spec.name} vanished while created") from None
            return found

    def _suggest(
        self,
        spec: Experiment,
        view: ob.SuggestionView,
        records: list[TrialRecord],
        state: rec.SuggestionState,
        count: int,
    ) -> tuple[ob.SuggestionView, list[TrialRecord], rec.SuggestionState, int]:
        """Ask for ``count`` assignments and persist them (or the failure) in the Suggestion."""
        client = self.services.suggestions(spec.algorithm.algorithm_name)
        before = rec.Counts.of(records)
        overlay = dict(view.overlay)
        validated = view.validated
        names = {r.name for r in records}
        try:
            if not validated:
                client.validate(spec)
                validated = True
            reply = client.get(spec, records, count, overlay)
            settings = {s.name: s.value for s in reply.algorithm.algorithm_settings}
            suggested = check_reply(
                spec,
                reply,
                names,
                lambda avoid: new_trial_name(spec.name, names, avoid),
                resource_parameter(spec, {**overlay, **settings}),
            )
        except InvalidArgument as exc:
            problems = getattr(exc, "problems", None) or [str(exc)]
            message = "spec.algorithm: " + "; ".join(problems)
            new_state = replace(state, failed_message=message)
            self._persist(spec, view, replace(view, state=new_state, validated=validated))
            return view, records, new_state, 0
        except KatibError as exc:
            new_state = replace(state, failed_message=str(exc))
            self._persist(spec, view, replace(view, state=new_state, validated=validated))
            return view, records, new_state, 0
        overlay.update(settings)
        added = tuple(ob.Assigned(s.name, s.assignments, s.labels) for s in suggested)
        new_state = rec.after_suggestions(state, count, len(added), before)
        new_view = ob.SuggestionView(
            assigned=view.assigned + added, state=new_state, overlay=overlay, validated=validated
        )
        self._persist(spec, view, new_view)
        records = records + [a.record(len(records) + i) for i, a in enumerate(added)]
        logger.info("%s/%s: %d new suggestion(s)", spec.namespace, spec.name, len(added))
        return new_view, records, new_state, len(added)

    def _persist(self, spec: Experiment, base: ob.SuggestionView, new: ob.SuggestionView) -> None:
        """Write ``new`` into the Suggestion's status, provided its assignments are still
        ``base``'s (``StaleSuggestion`` otherwise: the caller reconciles again)."""
        names = [a.name for a in base.assigned]
        stamp = self.clock()

        def mutate(obj: dict[str, Any]) -> bool:
            current = ob.read_suggestion(obj)
            if [a.name for a in current.assigned] != names:
                raise StaleSuggestion(f"Suggestion {spec.name} changed while suggesting")
            status = obj.get("status") or {}
            updated = ob.suggestion_status(status, new, stamp)
            if updated == status:
                return False
            obj["status"] = updated
            return True

        if self.api.update_status(SUGGESTIONS, spec.namespace, spec.name, mutate) is None:
            raise StaleSuggestion(f"Suggestion {spec.name} was deleted")

    def _fetch_rules(
        self,
        spec: Experiment,
        view: ob.SuggestionView,
        records: list[TrialRecord],
        state: rec.SuggestionState,
        names: Sequence[str],
    ) -> tuple[list[TrialRecord], rec.SuggestionState]:
        """GetEarlyStoppingRules for queued trials about to start; a failure fails the
        experiment as a suggestion failure does (its Trials are not created)."""
        try:
            rules = self.services.early_stopping().rules(
                spec, records, view.overlay, self.config.db_address
            )
        except KatibError as exc:
            failed = replace(state, failed_message=f"early stopping: {exc}")
            self._persist(spec, view, replace(view, state=failed))
            return records, failed
        wanted = set(names)
        records = [
            replace(r, stop_rules=rules.rules, stop_semantics=rules.semantics)
            if r.name in wanted
            else r
            for r in records
        ]
        return records, state

    def _create_trial(
        self, exp: Mapping[str, Any], spec: Experiment, record: TrialRecord
    ) -> dict[str, Any]:
        rules = None
        if spec.early_stopping is not None:
            rules = RuleSet(record.stop_rules or (), record.stop_semantics)
        body = render.trial_object(
            spec, exp, record.name, record.assignments, record.labels, rules=rules
        )
        body["metadata"]["finalizers"] = [ob.TRIAL_FINALIZER]
        try:
            created = self.api.create(TRIALS, spec.namespace, body)
        except AlreadyExists:
            return self.api.get(TRIALS, spec.namespace, record.name) or body
        self.event(created, "Normal", "TrialCreated", f"Trial {record.name} is created")
        return created

    def _stop_trials(
        self,
        spec: Experiment,
        existing: Mapping[str, dict[str, Any]],
        records: list[TrialRecord],
        condition: rec.Condition,
    ) -> list[TrialRecord]:
        """Kill the trials of a completed experiment that are still running (a run that has
        already finished is left to its Trial's reconcile); returns the records after."""
        stamp = self.clock()
        result = []
        for record in records:
            trial = existing.get(record.name)
            if record.condition.completed or trial is None:
                result.append(record)
                continue
            run_spec = (trial.get("spec") or {}).get("runSpec") or {}
            res = _run_resource(run_spec)
            run = self.reads.run_object(res, spec.namespace, record.name) if res else None
            if run is not None and _outcome(trial, run) is not None:
                result.append(record)
                continue
            message = f"Stopped because the experiment {condition}"
            self._mark(trial, TrialCondition.KILLED, "TrialKilled", message, stamp)
            if res is not None and not (trial.get("spec") or {}).get("retainRun"):
                self.api.delete(res, spec.namespace, record.name, propagation="Foreground")
            result.append(replace(record, condition=TrialCondition.KILLED, reason="TrialKilled"))
        return result

    # -- trials --------------------------------------------------------------------------------

    def trial(self, namespace: str, name: str) -> float | None:
        """Reconcile one Trial; returns seconds until it wants another look, if any."""
        trial = self.api.get(TRIALS, namespace, name)
        if trial is None:
            return None
        meta = trial["metadata"]
        finalizers = list(meta.get("finalizers") or ())
        if meta.get("deletionTimestamp"):
            if ob.TRIAL_FINALIZER in finalizers:
                self.services.db.delete(name)
                meta["finalizers"] = [f for f in finalizers if f != ob.TRIAL_FINALIZER]
                self.api.replace(TRIALS, namespace, name, trial)
            self._awaiting_metrics.pop(str(meta.get("uid")), None)
            return None
        if ob.TRIAL_FINALIZER not in finalizers:
            meta["finalizers"] = [*finalizers, ob.TRIAL_FINALIZER]
            trial = self.api.replace(TRIALS, namespace, name, trial)
        kind, _, _ = ob.trial_condition(trial)
        spec = trial.get("spec") or {}
        res = _run_resource(spec.get("runSpec") or {})
        if res is None:
            self._mark(
                trial,
                TrialCondition.FAILED,
                "TrialFailed",
                "spec.runSpec: no apiVersion/kind",
                self.clock(),
            )
            return None
        run = self.reads.run_object(res, namespace, name)
        if run is None and kind is TrialCondition.RUNNING:
            # The cache may not have it yet: ask the server (a list by name needs no verb
            # beyond the informer's).
            found, _ = self.api.list(res, namespace, field_selector=f"metadata.name={name}")
            run = found[0] if found else None
        if kind.completed:
            going = run is None or (run.get("metadata") or {}).get("deletionTimestamp")
            if not going and not spec.get("retainRun"):
                self.api.delete(res, namespace, name, propagation="Foreground")
            return None
        if run is None:
            return self._start(trial, res, kind)
        outcome = _outcome(trial, run)
        if outcome is None:
            if kind is not TrialCondition.RUNNING:
                self._mark(
                    trial, TrialCondition.RUNNING, "TrialRunning", "Trial is running", self.clock()
                )
            return RUN_POLL_SECONDS if res.plural != "jobs" else None
        return self._finish(trial, run, res, outcome)

    def _start(self, trial: dict[str, Any], res: Resource, kind: TrialCondition) -> float | None:
        meta = trial["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        stamp = self.clock()
        if kind is TrialCondition.RUNNING:
            # The run object went away while the trial ran (deleted by hand, or never seen
            # because it was deleted before this controller started): the trial failed.
            self._mark(
                trial,
                TrialCondition.FAILED,
                "TrialFailed",
                f"the trial's {res.kind} {name} was deleted while it ran",
                stamp,
            )
            return None
        try:
            body = render.run_object(
                trial,
                db_address=self.config.db_address,
                collector_command=self.config.collector_command,
            )
        except render.RenderError as exc:
            self._mark(
                trial,
                TrialCondition.FAILED,
                "TrialFailed",
                f"cannot render the trial: {exc}",
                stamp,
            )
            return None
        try:
            self.api.create(res, namespace, body)
        except AlreadyExists:
            pass  # made by an earlier pass whose answer was lost, or not cached yet
        except (NotFound, Invalid) as exc:  # no such kind here, or the cluster refuses it
            self._mark(
                trial,
                TrialCondition.FAILED,
                "TrialFailed",
                f"cannot create the trial's {res.kind}: {exc.message or exc}",
                stamp,
            )
            return None
        self._mark(trial, TrialCondition.RUNNING, "TrialRunning", "Trial is running", stamp)
        return RUN_POLL_SECONDS if res.plural != "jobs" else None

    def _finish(
        self, trial: dict[str, Any], run: Mapping[str, Any], res: Resource, outcome: Any
    ) -> float | None:
        meta = trial["metadata"]
        name, uid = meta["name"], str(meta.get("uid"))
        spec = trial.get("spec") or {}
        try:
            objective = load_objective(spec.get("objective"), "Trial.spec.objective")
        except InvalidArgument as exc:
            message = "; ".join(getattr(exc, "problems", None) or [str(exc)])
            self._mark(trial, TrialCondition.FAILED, "TrialFailed", message, self.clock())
            return None
        summary = ObservationSummary(objective)
        db = self.services.db
        summary.add(db.entries(name))
        observation = summary.observation()
        stamp = self.clock()
        if _early_stopped(self.api, trial, run):
            self._mark(
                trial,
                TrialCondition.EARLY_STOPPED,
                "TrialEarlyStopped",
                "Trial is early stopped",
                stamp,
                observation,
            )
            return None
        if not outcome.succeeded:
            message = "Trial has failed"
            if outcome.reason or outcome.message:
                message += f". Job reason: {outcome.reason}: {outcome.message}".rstrip(": ")
            self._mark(trial, TrialCondition.FAILED, "TrialFailed", message, stamp, observation)
            return None
        value = _objective_value(observation, objective)
        if value is None or value == UNAVAILABLE:
            # Nothing in the DB yet: the collector reports before the pod ends, so this is
            # rare; look again for a while (Katib requeues until the sidecar reports). An
            # "unavailable" row is final (a Push trial, or a collector that found none).
            push = _collector_kind(spec) is CollectorKind.PUSH
            first = self._awaiting_metrics.setdefault(uid, time.monotonic())
            waited = time.monotonic() - first
            if value is None and not push and waited < self.config.metrics_grace_seconds:
                return METRICS_RETRY_SECONDS
            self._awaiting_metrics.pop(uid, None)
            if value is None:
                missing = LogEntry(None, objective.objective_metric_name, UNAVAILABLE)
                db.report(name, [missing])
                summary.add([missing])
            self._mark(
                trial,
                TrialCondition.METRICS_UNAVAILABLE,
                "MetricsUnavailable",
                f"Metric {objective.objective_metric_name!r} was not reported",
                stamp,
                summary.observation(),
            )
            return None
        self._awaiting_metrics.pop(uid, None)
        message = "Trial has succeeded"
        if outcome.reason:
            message += f". Job reason: {outcome.reason}"
        self._mark(trial, TrialCondition.SUCCEEDED, "TrialSucceeded", message, stamp, observation)
        return None

    def _mark(
        self,
        trial: Mapping[str, Any],
        kind: TrialCondition,
        reason: str,
        message: str,
        stamp: datetime,
        observation: Sequence[MetricValue] | None = None,
    ) -> None:
        """Write a transition to ``kind``; a completed trial never changes again."""
        changed: list[bool] = []

        def mutate(obj: dict[str, Any]) -> bool:
            current, _, _ = ob.trial_condition(obj)
            if current.completed or (current is kind and observation is None):
                return False
            status = obj.get("status") or {}
            if not status.get("conditions"):
                status = ob.mark_trial(
                    status, TrialCondition.CREATED, "TrialCreated", "Trial is created", stamp
                )
            obj["status"] = ob.mark_trial(status, kind, reason, message, stamp, observation)
            changed.append(True)
            return True

        written = self._update_status(TRIALS, trial, mutate)
        if written is not None and changed and kind.completed:
            level = "Normal" if kind is TrialCondition.SUCCEEDED else "Warning"
            self.event(written, level, reason, message)

    def _update_status(
        self, res: Resource, obj: Mapping[str, Any], mutate: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any] | None:
        """``mutate`` a copy of ``obj`` and write its status; if ``obj`` was stale (a
        conflict), read, change and write again. ``None`` if the object is gone."""
        meta = obj["metadata"]
        namespace, name = meta.get("namespace"), meta["name"]
        first = copy.deepcopy(dict(obj))
        if not mutate(first):
            return dict(obj)
        try:
            return self.api.replace_status(res, namespace, name, first)
        except Conflict:
            return self.api.update_status(res, namespace, name, mutate)
        except NotFound:
            return None

    # -- events --------------------------------------------------------------------------------

    def event(self, obj: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        """A Kubernetes Event about ``obj`` (best effort: a failure is logged only)."""
        meta = obj.get("metadata") or {}
        namespace = str(meta.get("namespace") or "default")
        stamp = ob.format_time(self.clock())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name')}.{secrets.token_hex(8)}",
                "namespace": namespace,
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta.get("name"),
                "namespace": namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": str(reason),
            "message": message[:1024],
            "type": kind,
            "source": {"component": "katib-controller"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        try:
            self.api.create(EVENTS, namespace, body)
        except Exception as exc:
            logger.debug("event %s for %s not recorded: %s", reason, meta.get("name"), exc)


# -- helpers ---------------------------------------------------------------------------------


def _records(
    view: ob.SuggestionView, existing: Mapping[str, Mapping[str, Any]]
) -> list[TrialRecord]:
    """Trial records in creation order: the Suggestion's assignments (a Trial's own record
    where it exists), then Trials the Suggestion does not list, oldest first."""
    records = []
    listed = set()
    for index, assigned in enumerate(view.assigned):
        listed.add(assigned.name)
        trial = existing.get(assigned.name)
        if trial is None:
            records.append(assigned.record(index))
        else:
            records.append(ob.trial_record(trial, index, assigned.labels))
    others = sorted(
        (t for n, t in existing.items() if n not in listed),
        key=lambda t: (str(t["metadata"].get("creationTimestamp", "")), t["metadata"]["name"]),
    )
    for trial in others:
        records.append(ob.trial_record(trial, len(records)))
    return records


def _launch_view(records: Sequence[TrialRecord], existing: Mapping[str, Any]) -> list[TrialRecord]:
    """The records as the decision must see them: a Trial that exists has been started."""
    return [
        replace(r, condition=TrialCondition.RUNNING)
        if r.condition is TrialCondition.CREATED and r.name in existing
        else r
        for r in records
    ]


def _final(
    spec: Experiment, exp: Mapping[str, Any], records: Sequence[TrialRecord]
) -> rec.Decision:
    """The decision that a completed experiment stands by: its stored condition, with the
    counts and best trial of ``records``."""
    condition, reason, message = ob.experiment_condition(exp)
    try:
        why = rec.Reason(reason)
    except ValueError:
        why = (
            rec.Reason.FAILED
            if condition is rec.Condition.FAILED
            else rec.Reason.MAX_TRIALS_REACHED
        )
    best = rec.best_trial(spec, records)
    return rec.Decision(
        condition, why, message, rec.Counts.of(records), best.name if best else None
    )


def _run_resource(run_spec: Mapping[str, Any]) -> Resource | None:
    api_version, kind = run_spec.get("apiVersion"), run_spec.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not kind:
        return None
    return resource_for(api_version, kind)


def _outcome(trial: Mapping[str, Any], run: Mapping[str, Any]) -> Any:
    spec = trial.get("spec") or {}
    return run_outcome(
        run, str(spec.get("successCondition", "")), str(spec.get("failureCondition", ""))
    )


def _collector_kind(spec: Mapping[str, Any]) -> CollectorKind:
    raw = ((spec.get("metricsCollector") or {}).get("collector") or {}).get("kind", "StdOut")
    try:
        return CollectorKind(raw)
    except ValueError:
        return CollectorKind.STDOUT


def _objective_value(observation: Sequence[MetricValue], objective: Any) -> str | None:
    record = TrialRecord(name="", index=0, assignments=(), observation=tuple(observation))
    return record.objective_value(objective)


def _early_stopped(api: KubeApi, trial: Mapping[str, Any], run: Mapping[str, Any]) -> bool:
    """Whether the collector stopped the trial by its rules: it writes
    :data:`render.EARLY_STOPPED_MESSAGE` to the primary container's termination message."""
    spec = trial.get("spec") or {}
    if not spec.get("earlyStoppingRules"):
        return False
    from katib.controller.kube.resources import PODS

    meta = trial["metadata"]
    # A TrainJob's pods come from its JobSet, not from a template we label: they carry the
    # JobSet's name (the run object's) instead of the trial label.
    if run.get("kind") == "TrainJob":
        run_name = (run.get("metadata") or {}).get("name") or meta["name"]
        owner = {"jobset.sigs.k8s.io/jobset-name": str(run_name)}
    else:
        owner = {ob.LABEL_TRIAL: meta["name"]}
    labels = {**owner, **(spec.get("primaryPodLabels") or {})}
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    pods, _ = api.list(PODS, meta["namespace"], label_selector=selector)
    container = spec.get("primaryContainerName")
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or ():
            if status.get("name") != container:
                continue
            terminated = (status.get("state") or {}).get("terminated") or {}
            if str(terminated.get("message", "")).strip() == render.EARLY_STOPPED_MESSAGE:
                return True
    return False
