"""``katib submit`` and the cluster side of ``katib status`` / ``katib trials``.

:func:`submit` admits an Experiment with the same rules as local runs
(:func:`katib.controller.validation.load_experiment`), then checks what a cluster run needs
(:func:`cluster_problems`: the trial template renders into a run object with the collector
wrapped in, the success and failure conditions parse) and creates the ``Experiment`` CR, or
updates it where Katib allows (``parallelTrialCount``, ``maxTrialCount``,
``maxFailedTrialCount``); any other spec change is refused naming the field, as Katib's
webhook does.

:func:`read` turns the Experiment CR and its Trial CRs (label ``katib.kubeflow.org/experiment``)
into the same ``(spec, status, trials)`` a results directory gives, so ``katib status`` and
``katib trials`` print the same table, JSON, YAML and CSV for both. :func:`follow` polls them
for the progress view until the experiment's status says Succeeded or Failed.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from katib.api.errors import InvalidArgument
from katib.controller import reconcile as rec
from katib.controller.kube import conditions, render
from katib.controller.kube import objects as ob
from katib.controller.kube.admission import load_with_template
from katib.controller.kube.api import Conflict, KubeApi
from katib.controller.kube.resources import EXPERIMENTS, TRIALS
from katib.controller.spec import Experiment, ParameterType
from katib.controller.trials import TrialCondition, TrialRecord
from katib.controller.validation import load_experiment

#: Spec fields Katib lets a user change on an existing experiment.
MUTABLE_SPEC = ("parallelTrialCount", "maxTrialCount", "maxFailedTrialCount")
DEFAULT_NAMESPACE = "default"
_CONFLICT_RETRIES = 5


def namespace_of(raw: Mapping[str, Any], namespace: str | None) -> str:
    """``-n`` if given, else the document's namespace, else ``default``."""
    if namespace:
        return namespace
    metadata = raw.get("metadata")
    if isinstance(metadata, Mapping) and isinstance(metadata.get("namespace"), str):
        return str(metadata["namespace"]) or DEFAULT_NAMESPACE
    return DEFAULT_NAMESPACE


def cluster_problems(spec: Experiment, raw: Mapping[str, Any]) -> list[str]:
    """What stops an admitted experiment from running on the cluster, as ``field: message``.

    A dry run of rendering: one trial (every parameter at its lower end or first value) is
    rendered into its Trial and run object, so a template without a command to wrap, an
    unsupported collector or a condition outside the GJSON subset shows up before submission.
    A ConfigMap template is rendered only once inlined (``spec`` from
    :func:`~katib.controller.kube.admission.load_with_template`); NAS trials are not rendered.
    """
    problems = []
    template = spec.trial_template
    for field, condition in (
        ("spec.trialTemplate.successCondition", template.success_condition),
        ("spec.trialTemplate.failureCondition", template.failure_condition),
    ):
        problem = conditions.check_condition(condition, field) if condition else None
        if problem:
            problems.append(problem)
    if template.config_map is not None or spec.nas_config is not None:
        return problems  # rendered by the operator from the ConfigMap / NAS assignments
    experiment = copy.deepcopy(dict(raw))
    experiment.setdefault("metadata", {})["uid"] = "dry-run"
    try:
        trial = render.trial_object(spec, experiment, f"{spec.name}-dryrun", _sample(spec))
        trial["metadata"]["uid"] = "dry-run"
        render.run_object(trial, db_address="katib-db-manager:6789")
    except render.RenderError as exc:
        problems.append(str(exc))
    return problems


def _sample(spec: Experiment) -> list[tuple[str, str]]:
    out = []
    for param in spec.parameters:
        space = param.feasible_space
        if param.parameter_type in (ParameterType.CATEGORICAL, ParameterType.DISCRETE):
            out.append((param.name, space.list[0] if space.list else ""))
        else:
            out.append((param.name, space.min or "0"))
    return out


def admit(raw: Mapping[str, Any], api: KubeApi | None = None) -> Experiment:
    """Katib's admission plus :func:`cluster_problems`; ``InvalidArgument`` lists them all.
    The algorithm name is left to the cluster's suggestion service.

    With ``api``, a ConfigMap trial template is read from the cluster, admitted and rendered
    like an inline one (the experiment returned keeps the ConfigMap reference); without, it is
    left to the operator.
    """
    spec = load_experiment(raw, check_algorithm=False)
    if api is not None and spec.trial_template.config_map is not None:
        problems = cluster_problems(load_with_template(api, raw), raw)
    else:
        problems = cluster_problems(spec, raw)
    if problems:
        raise InvalidArgument(problems)
    return spec


def submit(
    api: KubeApi, raw: Mapping[str, Any], namespace: str | None = None
) -> tuple[dict[str, Any], bool]:
    """Create the Experiment CR, or update the fields Katib lets change; (object, created).
    Admission reads a ConfigMap trial template through ``api`` (see :func:`admit`)."""
    spec = admit(raw, api)
    ns = namespace_of(raw, namespace)
    body = copy.deepcopy(dict(raw))
    body.pop("status", None)
    metadata = body.setdefault("metadata", {})
    metadata["namespace"] = ns
    for key in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields"):
        metadata.pop(key, None)
    name = str(metadata["name"])
    for _ in range(_CONFLICT_RETRIES):
        existing = api.get(EXPERIMENTS, ns, name)
        if existing is None:
            return api.create(EXPERIMENTS, ns, body), True
        _check_update(existing, spec)
        update = copy.deepcopy(existing)
        for key in MUTABLE_SPEC:
            if key in body["spec"]:
                update["spec"][key] = body["spec"][key]
            else:
                update["spec"].pop(key, None)
        for key in ("labels", "annotations"):
            if key in metadata:
                update["metadata"][key] = metadata[key]
        try:
            return api.replace(EXPERIMENTS, ns, name, update), False
        except Conflict:
            continue
    raise InvalidArgument(f"experiment {ns}/{name} kept changing while being updated; try again")


#: Experiment fields compared on an update, by the spec field a user writes.
_SPEC_FIELDS = {
    "objective": "objective",
    "algorithm": "algorithm",
    "parameters": "parameters",
    "trial_template": "trialTemplate",
    "resume_policy": "resumePolicy",
    "metrics_collector": "metricsCollectorSpec",
    "early_stopping": "earlyStopping",
    "nas_config": "nasConfig",
}


def _check_update(existing: Mapping[str, Any], new: Experiment) -> None:
    """Refuse changes Katib refuses, comparing both after defaulting, so that what a webhook
    filled in on the stored object (strategies, conditions) is not taken for a change."""
    try:
        old = load_experiment(
            {k: v for k, v in existing.items() if k != "status"}, check_algorithm=False
        )
    except InvalidArgument as exc:
        raise InvalidArgument(
            [f"the stored experiment is not valid ({exc}); delete it first"]
        ) from None
    changed = [
        spec_field
        for attr, spec_field in _SPEC_FIELDS.items()
        if getattr(old, attr) != getattr(new, attr)
    ]
    if changed:
        raise InvalidArgument(
            [
                f"spec.{key}: cannot change on an existing experiment (only "
                f"{', '.join(MUTABLE_SPEC)} can); delete it first or use another name"
                for key in changed
            ]
        )


# -- reading the cluster ------------------------------------------------------------------


def trial_record(trial: Mapping[str, Any], index: int) -> TrialRecord:
    """A Trial CR as the record local runs keep, read as the operator reads it, with the
    Trial's own labels."""
    labels = ((trial.get("metadata") or {}).get("labels")) or {}
    return ob.trial_record(trial, index, sorted((str(k), str(v)) for k, v in labels.items()))


def experiment_status(experiment: Mapping[str, Any]) -> dict[str, Any]:
    """The Experiment CR's status in the shape local results keep."""
    status = experiment.get("status") or {}
    condition, reason, message = ob.experiment_condition(experiment)
    best = (status.get("currentOptimalTrial") or {}).get("bestTrialName") or None
    return {
        "condition": condition.value,
        "reason": reason,
        "message": message,
        "start_time": status.get("startTime"),
        "completion_time": status.get("completionTime"),
        "best_trial": best,
    }


def read(
    api: KubeApi, namespace: str, name: str
) -> tuple[Experiment, dict[str, Any], list[TrialRecord]]:
    """The experiment, its status and its trials from the cluster; ``InvalidArgument`` if
    there is no such experiment."""
    experiment = api.get(EXPERIMENTS, namespace, name)
    if experiment is None:
        raise InvalidArgument(
            f"experiment {name!r} not found in namespace {namespace!r} (another: -n NAMESPACE)"
        )
    raw = {k: v for k, v in experiment.items() if k != "status"}
    spec = load_experiment(raw, check_algorithm=False)
    items, _ = api.list(TRIALS, namespace, label_selector=f"{render.EXPERIMENT_LABEL}={name}")
    owned = [t for t in items if _owned_by(t, experiment)]
    owned.sort(
        key=lambda t: (
            str((t.get("metadata") or {}).get("creationTimestamp", "")),
            str((t.get("metadata") or {}).get("name", "")),
        )
    )
    trials = [trial_record(t, i) for i, t in enumerate(owned)]
    status = experiment_status(experiment)
    if status["best_trial"] not in {t.name for t in trials}:
        status["best_trial"] = None
    return spec, status, trials


def _owned_by(trial: Mapping[str, Any], experiment: Mapping[str, Any]) -> bool:
    """A trial with an owner reference to another Experiment of that name is not this one's."""
    uid = (experiment.get("metadata") or {}).get("uid")
    refs = (trial.get("metadata") or {}).get("ownerReferences") or []
    experiments = [r for r in refs if isinstance(r, Mapping) and r.get("kind") == "Experiment"]
    return not experiments or any(r.get("uid") == uid for r in experiments)


def decision(status: Mapping[str, Any], trials: Sequence[TrialRecord]) -> rec.Decision:
    """A :class:`~katib.controller.reconcile.Decision` for the progress view."""
    try:
        reason = rec.Reason(str(status.get("reason", "")))
    except ValueError:
        reason = rec.Reason.RUNNING
    return rec.Decision(
        condition=rec.Condition(status["condition"]),
        reason=reason,
        message=str(status.get("message", "")),
        counts=rec.Counts.of(trials),
        best_trial=status.get("best_trial"),
    )


def follow(
    api: KubeApi,
    namespace: str,
    name: str,
    on_progress: Callable[[rec.Decision, list[TrialRecord]], None],
    *,
    poll_seconds: float = 2.0,
    timeout: float | None = None,
) -> tuple[Experiment, rec.Decision, list[TrialRecord]]:
    """Poll the experiment until its status says Succeeded or Failed (``TimeoutError`` after
    ``timeout`` seconds); ``on_progress`` sees each state."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        spec, status, trials = read(api, namespace, name)
        current = decision(status, trials)
        on_progress(current, trials)
        if current.completed:
            return spec, current, trials
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"experiment {namespace}/{name} still {current.condition}")
        time.sleep(poll_seconds)


def failure_lines(trials: Sequence[TrialRecord]) -> list[str]:
    """One line per failed trial, with the reason and message its Trial CR gives."""
    return [
        f"{t.name} failed: {t.reason} {t.message}".rstrip()
        for t in trials
        if t.condition is TrialCondition.FAILED
    ]
