"""Katib's custom resources <-> the controller's records: pure functions, no API calls.

The operator keeps its state in the cluster, in Katib's own fields (reference 6.6-6.7), so
``kubectl get`` and Katib's SDK read it:

* a **Trial** (``kubeflow.org/v1beta1``) becomes a :class:`~katib.controller.trials.TrialRecord`
  (:func:`trial_record`): its condition from ``status.conditions`` by Katib's precedence, its
  observation from ``status.observation.metrics``; :func:`mark_trial` writes a transition back.
* the **Suggestion** of an experiment (same name, owned by it) persists every assignment the
  suggestion service returned, in ``status.suggestions``, together with the settings overlay
  (``status.algorithmSettings``) and the service's state as conditions: ``Running`` once the
  settings were validated, ``Succeeded`` (reason ``SuggestionExhausted``) when it has nothing
  more to suggest, ``Failed`` with the error. :func:`read_suggestion` reads it back.
* the **Experiment** status (:func:`experiment_status`) is built from a reconcile
  :class:`~katib.controller.reconcile.Decision`: conditions with Katib's reasons, counts, name
  lists, ``currentOptimalTrial``, start and completion times.

Conditions follow Katib's rules (:func:`set_condition`): one entry per type, replaced in place,
``lastTransitionTime`` kept while the status does not flip.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from katib.controller import reconcile as rec
from katib.controller.kube.render import SEMANTICS_ANNOTATION, owner_reference
from katib.controller.spec import Experiment
from katib.controller.trials import MetricValue, TrialCondition, TrialRecord
from katib.earlystopping.rules import Comparison, Rule, Semantics

API_VERSION = "kubeflow.org/v1beta1"
LABEL_EXPERIMENT = "katib.kubeflow.org/experiment"
LABEL_TRIAL = "katib.kubeflow.org/trial"
#: Katib's Trial finalizer: the observation log is deleted from the DB before the Trial goes.
TRIAL_FINALIZER = "clean-metrics-in-db"
SUGGESTION_EXHAUSTED = "SuggestionExhausted"

#: Katib's classification precedence (reference 6.6) over the conditions that are "True".
_PRECEDENCE = (
    TrialCondition.KILLED,
    TrialCondition.FAILED,
    TrialCondition.SUCCEEDED,
    TrialCondition.EARLY_STOPPED,
    TrialCondition.METRICS_UNAVAILABLE,
    TrialCondition.RUNNING,
    TrialCondition.CREATED,
)
#: Experiment status fields: (count field, name-list field) per trial condition.
_STATUS_FIELDS = {
    TrialCondition.CREATED: ("trialsPending", "pendingTrialList"),
    TrialCondition.RUNNING: ("trialsRunning", "runningTrialList"),
    TrialCondition.SUCCEEDED: ("trialsSucceeded", "succeededTrialList"),
    TrialCondition.FAILED: ("trialsFailed", "failedTrialList"),
    TrialCondition.KILLED: ("trialsKilled", "killedTrialList"),
    TrialCondition.EARLY_STOPPED: ("trialsEarlyStopped", "earlyStoppedTrialList"),
    TrialCondition.METRICS_UNAVAILABLE: (
        "trialMetricsUnavailable",
        "metricsUnavailableTrialList",
    ),
}


# -- times, conditions, owners ---------------------------------------------------------------


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``, to the second (Kubernetes' ``metav1.Time``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> datetime | None:
    """A ``metav1.Time`` string as an aware datetime; ``None`` if absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    kind: str,
    status: bool,
    reason: str,
    message: str,
    now: datetime,
) -> list[dict[str, Any]]:
    """``conditions`` with the one of type ``kind`` set (Katib's rules); a new list.

    Unchanged when the condition already has this status, reason and message;
    ``lastTransitionTime`` is kept unless the status flips.
    """
    result = [dict(c) for c in conditions or () if isinstance(c, Mapping)]
    text = "True" if status else "False"
    stamp = format_time(now)
    for item in result:
        if item.get("type") != kind:
            continue
        if (item.get("status"), item.get("reason"), item.get("message")) == (
            text,
            reason,
            message,
        ):
            return result
        if item.get("status") != text:
            item["lastTransitionTime"] = stamp
        item.update(status=text, reason=reason, message=message, lastUpdateTime=stamp)
        return result
    result.append(
        {
            "type": kind,
            "status": text,
            "reason": reason,
            "message": message,
            "lastUpdateTime": stamp,
            "lastTransitionTime": stamp,
        }
    )
    return result


def condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The condition of type ``kind`` in ``obj["status"]`` if it is ``"True"``."""
    for item in (obj.get("status") or {}).get("conditions") or ():
        if isinstance(item, Mapping) and item.get("type") == kind and item.get("status") == "True":
            return item
    return None


def owned_by(obj: Mapping[str, Any], kind: str) -> str | None:
    """The name of ``obj``'s controlling owner of ``kind``, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or ():
        if isinstance(ref, Mapping) and ref.get("kind") == kind and ref.get("controller"):
            return str(ref.get("name", "")) or None
    return None


# -- trials ------------------------------------------------------------------------------------


def observation_metrics(observation: Iterable[MetricValue]) -> dict[str, Any]:
    """``status.observation`` of a Trial (and of ``currentOptimalTrial``)."""
    return {
        "metrics": [
            {"name": m.name, "min": m.min, "max": m.max, "latest": m.latest} for m in observation
        ]
    }


def read_observation(status: Mapping[str, Any]) -> tuple[MetricValue, ...]:
    """Inverse of :func:`observation_metrics` (malformed entries are skipped)."""
    metrics = ((status.get("observation") or {}).get("metrics")) or ()
    result = []
    for item in metrics:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            result.append(
                MetricValue(
                    name=item["name"],
                    min=str(item.get("min", "unavailable")),
                    max=str(item.get("max", "unavailable")),
                    latest=str(item.get("latest", "unavailable")),
                )
            )
    return tuple(result)


def trial_condition(trial: Mapping[str, Any]) -> tuple[TrialCondition, str, str]:
    """A Trial's condition, reason and message (Created when it has no condition yet)."""
    for kind in _PRECEDENCE:
        found = condition(trial, kind.value)
        if found is not None:
            return kind, str(found.get("reason", "")), str(found.get("message", ""))
    return TrialCondition.CREATED, "TrialCreated", ""


def trial_record(
    trial: Mapping[str, Any], index: int, labels: Sequence[tuple[str, str]] = ()
) -> TrialRecord:
    """A Trial CR as the controller's record; ``index`` is its place in creation order and
    ``labels`` the suggestion service's labels for it."""
    spec = trial.get("spec") or {}
    status = trial.get("status") or {}
    kind, reason, message = trial_condition(trial)
    assignments = tuple(
        (str(a.get("name", "")), str(a.get("value", "")))
        for a in spec.get("parameterAssignments") or ()
        if isinstance(a, Mapping)
    )
    rules = spec.get("earlyStoppingRules")
    return TrialRecord(
        name=trial["metadata"]["name"],
        index=index,
        assignments=assignments,
        condition=kind,
        reason=reason,
        message=message,
        labels=tuple(labels),
        start_time=parse_time(status.get("startTime")),
        completion_time=parse_time(status.get("completionTime")),
        observation=read_observation(status),
        stop_rules=None if rules is None else read_rules(rules),
        stop_semantics=_semantics(trial) if rules is not None else Semantics.ANY,
    )


def _semantics(trial: Mapping[str, Any]) -> Semantics:
    """How a Trial's rules are evaluated: its annotation, else Katib's form."""
    annotations = (trial.get("metadata") or {}).get("annotations") or {}
    try:
        return Semantics(annotations.get(SEMANTICS_ANNOTATION, Semantics.KATIB.value))
    except ValueError:
        return Semantics.KATIB


def mark_trial(
    status: Mapping[str, Any] | None,
    kind: TrialCondition,
    reason: str,
    message: str,
    now: datetime,
    observation: Sequence[MetricValue] | None = None,
) -> dict[str, Any]:
    """A Trial's status after a transition to ``kind`` (a new dict).

    Running sets ``startTime`` if unset; a completed condition turns Running to False (keeping
    its reason, as Katib does) and sets ``completionTime``.
    """
    result = copy.deepcopy(dict(status or {}))
    conditions = result.get("conditions") or []
    if kind.completed:
        running = next(
            (c for c in conditions if isinstance(c, Mapping) and c.get("type") == "Running"),
            None,
        )
        if running is not None and running.get("status") == "True":
            conditions = set_condition(
                conditions, "Running", False, str(running.get("reason", "")), message, now
            )
        result.setdefault("completionTime", format_time(now))
    result.setdefault("startTime", format_time(now))
    result["conditions"] = set_condition(conditions, kind.value, True, reason, message, now)
    if observation is not None:
        result["observation"] = observation_metrics(observation)
    return result


# -- early-stopping rules ------------------------------------------------------------------------


def read_rules(data: Any) -> tuple[Rule, ...]:
    """A Trial's ``spec.earlyStoppingRules`` (as :func:`render.rule_dict` writes them);
    malformed entries are skipped."""
    rules = []
    for item in data or ():
        if not isinstance(item, Mapping):
            continue
        try:
            rules.append(
                Rule(
                    str(item["name"]),
                    float(item["value"]),
                    Comparison[str(item.get("comparison", "LESS")).upper()],
                    int(item.get("startStep", 0)),
                )
            )
        except (KeyError, ValueError, TypeError):
            continue
    return tuple(rules)


# -- suggestions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assigned:
    """One assignment persisted in the Suggestion: the trial it becomes."""

    name: str
    assignments: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...] = ()

    def to_status(self) -> dict[str, Any]:
        """This entry of ``status.suggestions``."""
        entry: dict[str, Any] = {
            "name": self.name,
            "parameterAssignments": [{"name": k, "value": v} for k, v in self.assignments],
        }
        if self.labels:
            entry["labels"] = dict(self.labels)
        return entry

    def record(self, index: int) -> TrialRecord:
        """A Created record for a trial not made yet (queued)."""
        return TrialRecord(
            name=self.name,
            index=index,
            assignments=self.assignments,
            labels=self.labels,
            message="Trial is created",
        )


@dataclass(frozen=True)
class SuggestionView:
    """What the Suggestion of an experiment holds."""

    assigned: tuple[Assigned, ...] = ()
    state: rec.SuggestionState = field(default_factory=rec.SuggestionState)
    overlay: Mapping[str, str] = field(default_factory=dict)
    #: Whether the service accepted the algorithm settings (ValidateAlgorithmSettings).
    validated: bool = False


def suggestion_object(experiment: Mapping[str, Any], spec: Experiment) -> dict[str, Any]:
    """The Suggestion for ``experiment``: same name and namespace, owned by it."""
    raw_spec = experiment.get("spec") or {}
    body: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": "Suggestion",
        "metadata": {
            "name": spec.name,
            "namespace": spec.namespace,
            "labels": {**spec.labels, LABEL_EXPERIMENT: spec.name},
            "ownerReferences": [owner_reference(experiment)],
        },
        "spec": {
            "algorithm": copy.deepcopy(raw_spec.get("algorithm") or {}),
            "requests": 0,
            "resumePolicy": spec.resume_policy.value,
        },
    }
    if raw_spec.get("earlyStopping"):
        body["spec"]["earlyStopping"] = copy.deepcopy(raw_spec["earlyStopping"])
    return body


def read_suggestion(suggestion: Mapping[str, Any] | None) -> SuggestionView:
    """The persisted state of a Suggestion (an empty view for ``None``)."""
    if suggestion is None:
        return SuggestionView()
    status = suggestion.get("status") or {}
    assigned = []
    for entry in status.get("suggestions") or ():
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            continue
        assigned.append(
            Assigned(
                name=entry["name"],
                assignments=tuple(
                    (str(a.get("name", "")), str(a.get("value", "")))
                    for a in entry.get("parameterAssignments") or ()
                    if isinstance(a, Mapping)
                ),
                labels=tuple(
                    sorted((str(k), str(v)) for k, v in (entry.get("labels") or {}).items())
                ),
            )
        )
    failed = condition(suggestion, "Failed")
    exhausted = condition(suggestion, "Succeeded")
    return SuggestionView(
        assigned=tuple(assigned),
        state=rec.SuggestionState(
            exhausted=exhausted is not None and exhausted.get("reason") == SUGGESTION_EXHAUSTED,
            failed_message=str(failed.get("message", "")) if failed is not None else "",
        ),
        overlay={
            str(s.get("name")): str(s.get("value", ""))
            for s in status.get("algorithmSettings") or ()
            if isinstance(s, Mapping) and s.get("name")
        },
        validated=condition(suggestion, "Running") is not None,
    )


def suggestion_status(
    status: Mapping[str, Any] | None,
    view: SuggestionView,
    now: datetime,
) -> dict[str, Any]:
    """A Suggestion's status holding ``view`` (a new dict; other fields are kept)."""
    result = copy.deepcopy(dict(status or {}))
    result["suggestions"] = [a.to_status() for a in view.assigned]
    result["suggestionCount"] = len(view.assigned)
    if view.overlay:
        result["algorithmSettings"] = [{"name": k, "value": v} for k, v in view.overlay.items()]
    conditions = result.get("conditions") or []
    if not any(isinstance(c, Mapping) and c.get("type") == "Created" for c in conditions):
        conditions = set_condition(
            conditions, "Created", True, "SuggestionCreated", "Suggestion is created", now
        )
        result.setdefault("startTime", format_time(now))
    if view.validated:
        conditions = set_condition(
            conditions, "Running", True, "SuggestionRunning", "Suggestion is running", now
        )
    if view.state.exhausted:
        conditions = set_condition(
            conditions,
            "Succeeded",
            True,
            SUGGESTION_EXHAUSTED,
            "The suggestion service has nothing more to suggest",
            now,
        )
    if view.state.failed_message:
        conditions = set_condition(
            conditions, "Failed", True, "SuggestionFailed", view.state.failed_message, now
        )
    elif condition({"status": {"conditions": conditions}}, "Failed") is not None:
        conditions = set_condition(
            conditions, "Failed", False, "SuggestionRestarted", "Asking again", now
        )
    result["conditions"] = conditions
    return result


# -- experiments ---------------------------------------------------------------------------------


def experiment_condition(experiment: Mapping[str, Any]) -> tuple[rec.Condition, str, str]:
    """An Experiment's current condition, reason and message (Created without any)."""
    for kind in (
        rec.Condition.SUCCEEDED,
        rec.Condition.FAILED,
        rec.Condition.RUNNING,
        rec.Condition.RESTARTING,
        rec.Condition.CREATED,
    ):
        found = condition(experiment, kind.value)
        if found is not None:
            return kind, str(found.get("reason", "")), str(found.get("message", ""))
    return rec.Condition.CREATED, "", ""


def experiment_created(status: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The first status of an experiment: Created and its start time."""
    result = copy.deepcopy(dict(status or {}))
    result["conditions"] = set_condition(
        result.get("conditions"),
        rec.Condition.CREATED,
        True,
        rec.Reason.CREATED,
        "Experiment is created",
        now,
    )
    result.setdefault("startTime", format_time(now))
    return result


def experiment_restarting(status: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    """A completed experiment allowed to continue: Restarting, Succeeded/Failed dropped."""
    result = copy.deepcopy(dict(status or {}))
    conditions = [
        c
        for c in result.get("conditions") or ()
        if isinstance(c, Mapping) and c.get("type") not in ("Succeeded", "Failed")
    ]
    result["conditions"] = set_condition(
        conditions,
        rec.Condition.RESTARTING,
        True,
        rec.Reason.RESTARTING,
        "Experiment is restarting",
        now,
    )
    result.pop("completionTime", None)
    return result


def experiment_failed(status: Mapping[str, Any] | None, message: str, now: datetime) -> dict:
    """An experiment that cannot run (invalid): Failed with ``message``."""
    result = copy.deepcopy(dict(status or {}))
    conditions = result.get("conditions") or []
    if not conditions:
        conditions = set_condition(
            conditions, "Created", True, rec.Reason.CREATED, "Experiment is created", now
        )
    result["conditions"] = set_condition(
        conditions, rec.Condition.FAILED, True, rec.Reason.FAILED, message, now
    )
    result.setdefault("startTime", format_time(now))
    result.setdefault("completionTime", format_time(now))
    return result


def experiment_status(
    status: Mapping[str, Any] | None,
    decision: rec.Decision,
    trials: Sequence[TrialRecord],
    now: datetime,
) -> dict[str, Any]:
    """An Experiment's status after ``decision`` over ``trials`` (in creation order).

    ``lastReconcileTime`` is the caller's to set, only when something else changed, so an
    unchanged experiment costs no write.
    """
    result = copy.deepcopy(dict(status or {}))
    conditions = result.get("conditions") or []
    kind = decision.condition
    if decision.completed:
        running = next(
            (c for c in conditions if isinstance(c, Mapping) and c.get("type") == "Running"),
            None,
        )
        if running is not None and running.get("status") == "True":
            conditions = set_condition(
                conditions,
                "Running",
                False,
                str(running.get("reason", "")),
                decision.message,
                now,
            )
        result.setdefault("completionTime", format_time(now))
    if kind is not rec.Condition.CREATED:
        conditions = set_condition(
            conditions, kind.value, True, decision.reason.value, decision.message, now
        )
    result["conditions"] = conditions
    result.setdefault("startTime", format_time(now))
    by: dict[TrialCondition, list[str]] = {c: [] for c in TrialCondition}
    for trial in trials:
        by[trial.condition].append(trial.name)
    result["trials"] = len(trials)
    for trial_kind, (count_field, list_field) in _STATUS_FIELDS.items():
        names = by[trial_kind]
        if names:
            result[count_field] = len(names)
            result[list_field] = names
        else:
            result.pop(count_field, None)
            result.pop(list_field, None)
    best = next((t for t in trials if t.name == decision.best_trial), None)
    if best is not None:
        result["currentOptimalTrial"] = {
            "bestTrialName": best.name,
            "parameterAssignments": [{"name": k, "value": v} for k, v in best.assignments],
            "observation": observation_metrics(best.observation),
        }
    else:
        result.pop("currentOptimalTrial", None)
    return result
