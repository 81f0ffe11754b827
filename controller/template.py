"""Trial templates: defaults, Katib's substitution rules, and the primary container's command.

Katib serialises the template to a string and replaces ``${trialParameters.NAME}`` textually.
We substitute inside every string leaf of the parsed object instead, so a value containing a
quote, ``$`` or a newline cannot change the template's structure. Meta references
(``${trialSpec.Name}``, ``Namespace``, ``Kind``, ``APIVersion``, ``Labels[key]``,
``Annotations[key]``) follow reference 6.3.
"""

from __future__ import annotations

import copy
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from katib.controller.spec import TrialParameter, TrialTemplate

logger = logging.getLogger(__name__)

META_REFERENCE = re.compile(r"^\$\{trialSpec\.(.+?)\}$")
PLACEHOLDER = re.compile(r"\$\{trialParameters\.(.+?)\}")
_META_KEYED = re.compile(r"^(Labels|Annotations)\[(.+)\]$")
_META_PLAIN = ("Name", "Namespace", "Kind", "APIVersion")
#: Variables the controller defines for every trial, which ``$(VAR)`` may name besides the
#: container's own env (Katib injects ``KATIB_TRIAL_NAME`` into the container the same way).
CONTROLLER_VARS = (
    "KATIB_TRIAL_NAME",
    "KATIB_EXPERIMENT_DIR",
    "KATIB_DB_MANAGER_ADDRESS",
    "KATIB_TRIAL_CHECKPOINT_DIR",
    "KATIB_PARENT_TRIAL_NAME",
    "KATIB_PARENT_CHECKPOINT_DIR",
)

_KUBEFLOW_JOBS = ("TFJob", "PyTorchJob", "XGBoostJob", "MPIJob")


def default_conditions(kind: str) -> tuple[str, str] | None:
    """Katib's (success, failure) GJSON conditions for a trial kind, None if it has none."""
    if kind == "Job":
        pattern = 'status.conditions.#(type=="{}")#|#(status=="True")#'
        return pattern.format("Complete"), pattern.format("Failed")
    if kind in _KUBEFLOW_JOBS:
        pattern = 'status.conditions.#(type=="{}")#|#(status=="True")#'
        return pattern.format("Succeeded"), pattern.format("Failed")
    if kind == "TrainJob":
        pattern = 'status.conditions.#(type=="{}")#|#(status=="True")#'
        return pattern.format("Complete"), pattern.format("Failed")
    return None


def default_primary_pod_labels(kind: str) -> dict[str, str]:
    """Katib's default ``primaryPodLabels`` for distributed trial kinds."""
    if kind in _KUBEFLOW_JOBS:
        return {"training.kubeflow.org/job-role": "master"}
    if kind == "TrainJob":
        return {
            "jobset.sigs.k8s.io/replicatedjob-name": "node",
            "batch.kubernetes.io/job-completion-index": "0",
        }
    return {}


def map_strings(obj: Any, fn: Callable[[str], str]) -> Any:
    """A deep copy of ``obj`` with ``fn`` applied to every string leaf (not to keys)."""
    if isinstance(obj, str):
        return fn(obj)
    if isinstance(obj, Mapping):
        return {key: map_strings(value, fn) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [map_strings(value, fn) for value in obj]
    return copy.copy(obj)


def iter_strings(obj: Any) -> Iterator[str]:
    """Every string leaf of ``obj``."""
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, Mapping):
        for value in obj.values():
            yield from iter_strings(value)
    elif isinstance(obj, list | tuple):
        for value in obj:
            yield from iter_strings(value)


def meta_value(field: str, trial_spec: Mapping[str, Any], trial_name: str, namespace: str) -> str:
    """The value of ``${trialSpec.<field>}``; ``KeyError`` with a message if it has none."""
    metadata = trial_spec.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        metadata = {}
    if field == "Name":
        return trial_name
    if field == "Namespace":
        return namespace
    if field == "Kind":
        return str(trial_spec.get("kind", ""))
    if field == "APIVersion":
        return str(trial_spec.get("apiVersion", ""))
    match = _META_KEYED.match(field)
    if match:
        source = metadata.get(match.group(1).lower()) or {}
        if not isinstance(source, Mapping) or match.group(2) not in source:
            raise KeyError(
                f"the template's metadata.{match.group(1).lower()} has no key {match.group(2)!r}"
            )
        return str(source[match.group(2)])
    raise KeyError(
        f"unknown meta reference ${{trialSpec.{field}}}; use one of "
        "Name, Namespace, Kind, APIVersion, Labels[key], Annotations[key]"
    )


def is_meta(reference: str) -> bool:
    """Whether a trialParameter reference is a ``${trialSpec.…}`` meta reference."""
    return META_REFERENCE.match(reference) is not None


def parameter_values(
    template: TrialTemplate,
    assignments: Mapping[str, str],
    trial_name: str,
    namespace: str,
) -> dict[str, str]:
    """``trialParameters`` name -> value for one trial (meta references resolved)."""
    values: dict[str, str] = {}
    for param in template.trial_parameters:
        meta = META_REFERENCE.match(param.reference)
        if meta:
            values[param.name] = meta_value(
                meta.group(1), template.trial_spec, trial_name, namespace
            )
        else:
            values[param.name] = assignments[param.reference]
    return values


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Replace every ``${trialParameters.NAME}`` in ``text`` whose NAME is in ``values``."""
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def expand_k8s_vars(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion of a command, an argument or an env value.

    A scanner with the kubelet's rules (``third_party/forked/golang/expansion``), used by local
    runs and the fake cluster's kubelet alike: ``$$`` is an escaped ``$``; ``$(`` opens a
    reference that ends at the *first* ``)``, and everything between is the name, replaced when
    ``env`` defines it and kept verbatim otherwise; any other ``$`` is kept, and so is a ``$(``
    never closed. References do not nest and an expanded value is not scanned again, so
    ``$(x$(y))`` names the variable ``x$(y`` (undefined: the text stays as written, the inner
    ``$(y)`` included), ``$$(X)`` is the literal ``$(X)``, and ``$($(X)`` stays as written.
    """
    out: list[str] = []
    start = i = 0
    while i < len(text) - 1:
        if text[i] != "$":
            i += 1
            continue
        out.append(text[start:i])
        nxt = text[i + 1]
        end = text.find(")", i + 2) if nxt == "(" else -1
        if nxt == "$":
            out.append("$")
            i += 2
        elif end != -1:
            name = text[i + 2 : end]
            out.append(env[name] if name in env else text[i : end + 1])
            i = end + 1
        else:  # a lone "$", or "$(" never closed: both characters kept
            out.append(text[i : i + 2])
            i += 2
        start = i
    out.append(text[start:])
    return "".join(out)


class TemplateError(ValueError):
    """A malformed field of the trial template; ``path`` is relative to the trialSpec."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"trialSpec{path}: {message}")
        self.path = path
        self.message = message


def locate_container(obj: Any, name: str, path: str = "") -> tuple[str, dict[str, Any]] | None:
    """The first container named ``name`` in any ``containers`` list inside ``obj``, with its
    path (``.spec.template.spec.containers[0]``)."""
    if isinstance(obj, Mapping):
        containers = obj.get("containers")
        if isinstance(containers, list):
            for i, container in enumerate(containers):
                if isinstance(container, Mapping) and container.get("name") == name:
                    return f"{path}.containers[{i}]", dict(container)
        for key, value in obj.items():
            found = locate_container(value, name, f"{path}.{key}")
            if found is not None:
                return found
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found = locate_container(value, name, f"{path}[{i}]")
            if found is not None:
                return found
    return None


def _string_list(container: Mapping[str, Any], key: str, path: str) -> list[str]:
    """``command`` or ``args`` as Kubernetes takes them: a list of strings (numbers allowed)."""
    value = container.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or any(
        isinstance(x, bool) or not isinstance(x, str | int | float) for x in value
    ):
        raise TemplateError(f"{path}.{key}", "must be a list of strings")
    return [str(x) for x in value]


@dataclass(frozen=True)
class Command:
    """The primary container as a local process: argv and the container's own env."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...]


def primary_container(template: TrialTemplate) -> tuple[str, dict[str, Any]] | None:
    """The primary container and its path in the trialSpec, ``None`` if there is none.

    A Kubeflow Trainer ``TrainJob`` declares its training container as ``spec.trainer``
    (image, command, args, env) rather than in a pod template; it stands for the primary
    container when no container of that name is in the template.
    """
    found = locate_container(template.trial_spec, template.primary_container_name)
    if found is None and template.trial_spec.get("kind") == "TrainJob":
        spec = template.trial_spec.get("spec")
        trainer = spec.get("trainer") if isinstance(spec, Mapping) else None
        if isinstance(trainer, Mapping):
            return ".spec.trainer", dict(trainer)
    return found


def container_command(template: TrialTemplate) -> Command:
    """The raw (unsubstituted) primary container command; ``ValueError`` if it has none."""
    found = primary_container(template)
    if found is None:
        raise ValueError(f"no container named {template.primary_container_name!r}")
    path, container = found
    command = _string_list(container, "command", path)
    args = _string_list(container, "args", path)
    if args and not command:
        raise ValueError(
            f"container {template.primary_container_name!r} has args but no command; a "
            "local run has no image entrypoint to pass them to, so give the entrypoint as "
            "command (e.g. command: [python3, /opt/train.py])"
        )
    argv = command + args
    if not argv:
        raise ValueError(
            f"container {template.primary_container_name!r} has no command or args; a local "
            "run cannot use the image's entrypoint, so give the command explicitly"
        )
    env: list[tuple[str, str]] = []
    items = container.get("env") or []
    if not isinstance(items, list):
        raise TemplateError(f"{path}.env", "must be a list of {name, value} mappings")
    for j, item in enumerate(items):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            raise TemplateError(f"{path}.env[{j}]", "must be a mapping with a name and a value")
        if "value" in item:
            env.append((str(item["name"]), str(item.get("value") or "")))
        else:
            logger.warning("env %s uses valueFrom, which a local run cannot resolve", item["name"])
    return Command(argv=tuple(argv), env=tuple(env))


def render_command(
    command: Command,
    values: Mapping[str, str],
    local_env: Mapping[str, str],
    rewrite: Callable[[str], str] = lambda s: s,
) -> tuple[list[str], dict[str, str]]:
    """argv and env for one trial.

    ``local_env`` is the process environment (this machine's, plus :data:`CONTROLLER_VARS`).
    As in Kubernetes, ``$(VAR)`` names only variables defined for the container: the
    :data:`CONTROLLER_VARS` and the container's ``env`` entries (in an env value, only those
    listed before it); anything else, e.g. ``$(HOME)``, stays as written.

    Order matters: ``$(VAR)`` expansion and ``rewrite`` (path re-rooting) run on the template's
    own strings first; parameter values are substituted last, so they are passed verbatim.
    """
    env: dict[str, str] = dict(local_env)
    defined = {name: local_env[name] for name in CONTROLLER_VARS if name in local_env}
    for name, value in command.env:
        env[name] = defined[name] = substitute(rewrite(expand_k8s_vars(value, defined)), values)

    def one(text: str) -> str:
        return substitute(rewrite(expand_k8s_vars(text, defined)), values)

    return [one(arg) for arg in command.argv], env


def check_trial_parameters(
    params: tuple[TrialParameter, ...],
    trial_spec: Mapping[str, Any],
    parameter_names: set[str],
    where: str,
) -> list[str]:
    """Problems with ``trialParameters`` against the template (reference 6.2 rule 9)."""
    problems: list[str] = []
    texts = list(iter_strings(trial_spec))
    seen_names: set[str] = set()
    seen_refs: set[str] = set()
    for i, param in enumerate(params):
        at = f"{where}[{i}]"
        if not param.name:
            problems.append(f"{at}.name: must not be empty")
        elif "{" in param.name or "}" in param.name:
            problems.append(f"{at}.name: {param.name!r} must not contain '{{' or '}}'")
        elif param.name in seen_names:
            problems.append(f"{at}.name: duplicate trial parameter {param.name!r}")
        if not param.reference:
            problems.append(f"{at}.reference: must not be empty")
        elif param.reference in seen_refs:
            problems.append(f"{at}.reference: {param.reference!r} is referenced twice")
        seen_names.add(param.name)
        seen_refs.add(param.reference)
        meta = META_REFERENCE.match(param.reference)
        if meta:
            try:
                meta_value(meta.group(1), trial_spec, "trial", "default")
            except KeyError as exc:
                problems.append(f"{at}.reference: {exc.args[0]}")
        elif param.reference and parameter_names and param.reference not in parameter_names:
            problems.append(
                f"{at}.reference: {param.reference!r} is not a parameter in spec.parameters "
                f"(known: {', '.join(sorted(parameter_names))})"
            )
        placeholder = f"${{trialParameters.{param.name}}}"
        if param.name and not any(placeholder in text for text in texts):
            problems.append(f"{at}.name: {placeholder} does not occur in trialTemplate.trialSpec")
    known = {p.name for p in params}
    unknown = sorted({m for t in texts for m in PLACEHOLDER.findall(t) if m not in known})
    for name in unknown:
        problems.append(
            f"{where}: ${{trialParameters.{name}}} is used in trialSpec but not declared; "
            "add it to trialParameters"
        )
    return problems


def ignored_replicas(template: TrialTemplate) -> list[str]:
    """Warnings for the parts of a distributed trial a local run does not start.

    Training-operator jobs (``pytorchReplicaSpecs``, ``tfReplicaSpecs``, ...) run their primary
    container's replica only; a TrainJob with ``numNodes`` > 1 runs one node.
    """
    warnings: list[str] = []
    spec = template.trial_spec.get("spec")
    if not isinstance(spec, Mapping):
        return warnings
    primary = primary_container(template)
    primary_path = primary[0] if primary else ""
    for key, replicas in spec.items():
        if not key.endswith("ReplicaSpecs") or not isinstance(replicas, Mapping):
            continue
        for role, replica in replicas.items():
            if not isinstance(replica, Mapping) or primary_path.startswith(f".spec.{key}.{role}."):
                continue
            count = replica.get("replicas", 1)
            if isinstance(count, int) and count > 0:
                warnings.append(
                    f"spec.trialTemplate.trialSpec.spec.{key}.{role}: {count} replica(s) are "
                    "ignored by local runs, which start only the primary container "
                    f"{template.primary_container_name!r}"
                )
    trainer = spec.get("trainer")
    nodes = trainer.get("numNodes") if isinstance(trainer, Mapping) else None
    if template.trial_spec.get("kind") == "TrainJob" and isinstance(nodes, int) and nodes > 1:
        warnings.append(
            f"spec.trialTemplate.trialSpec.spec.trainer.numNodes: {nodes} nodes; a local run "
            "starts one"
        )
    return warnings
