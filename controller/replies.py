"""A suggestion service's reply, checked before anything starts: the service is untrusted.

Every assignment must name each parameter of ``spec.parameters`` once and nothing else, with a
value in its feasible space: an int or a finite number within ``[min, max]`` on the step grid
(from ``min``), a ``discrete`` value numerically equal to one of the list, a ``categorical``
value from the list. A reply that breaks this is rejected as a whole
(:class:`~katib.api.errors.FailedPrecondition`; the experiment fails as on any suggestion
service error, and a rerun asks again). NAS experiments (``nasConfig``) carry architectures,
not parameters, and are not checked against a space.

One exception: a multi-fidelity algorithm (hyperband, asha, bohb) schedules the values of its
resource parameter itself, the one its ``resource_name`` setting names, and Katib ignores the
declared range there (its Hyperband sets the resource from ``r_l``). For that parameter
(:func:`resource_parameter`) any finite, positive value of the parameter's type is accepted.

Trial names become directory names, so a name from the reply is used only if it follows
Katib's rules for a trial (a Kubernetes object whose name is also a label value): a DNS-1123
subdomain of at most :data:`MAX_TRIAL_NAME` characters (lower-case letters, digits, ``-`` and
``.``, no ``..``, no ``/``), and unique. Any other name is replaced by a generated one and the
run says so in a warning.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from katib.api import api_pb2 as pb
from katib.api.errors import FailedPrecondition
from katib.controller.spec import Experiment, Parameter, ParameterType

logger = logging.getLogger(__name__)

MAX_TRIAL_NAME = 63
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
#: Bounds on what a reply may carry into a trial record.
MAX_LABELS = 64
MAX_LABEL_TEXT = 4096
_STEP_TOLERANCE = 1e-9


@dataclass(frozen=True)
class Suggested:
    """One checked assignment of a reply, ready to become a trial record."""

    name: str
    assignments: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]


def trial_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a trial name, or ``None`` if it can."""
    if len(name) > MAX_TRIAL_NAME:
        return f"longer than {MAX_TRIAL_NAME} characters"
    if not _NAME.match(name):
        return (
            "not a DNS-1123 name (lower-case letters, digits, '-' and '.', starting and ending "
            "with a letter or digit)"
        )
    return None


def resource_parameter(spec: Experiment, overlay: Mapping[str, str] | None = None) -> str | None:
    """The parameter whose values the algorithm schedules (a multi-fidelity resource), if any.

    It is the parameter named by the ``resource_name`` algorithm setting (the reply's overlay
    wins over the experiment's), provided it is a number parameter and the algorithm is a
    multi-fidelity one: a built-in algorithm says so itself (``Algorithm.reruns_configs``);
    an algorithm the built-in service does not have is served elsewhere (Katib's hyperband),
    and ``resource_name`` is Katib's convention for it.
    """
    settings = {s.name: s.value for s in spec.algorithm.algorithm_settings}
    settings.update(overlay or {})
    name = settings.get("resource_name", "")
    param = next((p for p in spec.parameters if p.name == name), None)
    if param is None or param.parameter_type not in (ParameterType.INT, ParameterType.DOUBLE):
        return None
    from katib.suggestion import registry

    if spec.algorithm.algorithm_name not in registry.names():
        return name
    algorithm = registry.get(spec.algorithm.algorithm_name)
    return name if algorithm.reruns_configs else None


def check_reply(
    spec: Experiment,
    reply: pb.GetSuggestionsReply,
    taken: Collection[str],
    new_name: Callable[[set[str]], str],
    resource: str | None = None,
) -> list[Suggested]:
    """The reply's assignments, checked; ``FailedPrecondition`` naming the first bad value.

    ``taken`` are the names of existing trials; ``new_name(avoid)`` generates a fresh name.
    ``resource`` is the parameter the algorithm schedules (:func:`resource_parameter`): its
    values are checked for type and sign only.
    """
    used = set(taken)
    result = []
    for i, item in enumerate(reply.parameter_assignments):
        at = f"GetSuggestions reply: parameter_assignments[{i}]"
        assignments = tuple((a.name, a.value) for a in item.assignments)
        if not spec.nas_config:
            _check_assignments(spec.parameters, assignments, at, resource)
        labels = tuple(sorted(item.labels.items()))
        if len(labels) > MAX_LABELS or any(
            len(k) > MAX_LABEL_TEXT or len(v) > MAX_LABEL_TEXT for k, v in labels
        ):
            raise FailedPrecondition(
                f"{at}.labels: at most {MAX_LABELS} labels of at most {MAX_LABEL_TEXT} "
                "characters each"
            )
        name = item.trial_name
        if name:
            problem = trial_name_problem(name)
            if problem is None and name in used:
                problem = "already the name of another trial"
            if problem is not None:
                renamed = new_name(used)
                logger.warning(
                    "the suggestion service named a trial %.80r, which is %s; it is named %s",
                    name,
                    problem,
                    renamed,
                )
                name = renamed
        else:
            name = new_name(used)
        used.add(name)
        result.append(Suggested(name, assignments, labels))
    return result


def _check_assignments(
    parameters: tuple[Parameter, ...],
    assignments: tuple[tuple[str, str], ...],
    at: str,
    resource: str | None = None,
) -> None:
    by_name = {p.name: p for p in parameters}
    seen: set[str] = set()
    for j, (name, value) in enumerate(assignments):
        where = f"{at}.assignments[{j}]"
        if name not in by_name:
            raise FailedPrecondition(f"{where}: {name!r} is not a parameter of the experiment")
        if name in seen:
            raise FailedPrecondition(f"{where}: parameter {name!r} is assigned twice")
        seen.add(name)
        if name == resource:
            problem = resource_problem(by_name[name], value)
        else:
            problem = value_problem(by_name[name], value)
        if problem:
            raise FailedPrecondition(f"{where}: {name}={value!r} {problem}")
    missing = [p.name for p in parameters if p.name not in seen]
    if missing:
        raise FailedPrecondition(f"{at}: no value for {', '.join(missing)}")


def value_problem(param: Parameter, value: str) -> str | None:
    """Why ``value`` is outside ``param``'s feasible space, or ``None``."""
    space = param.feasible_space
    if param.parameter_type is ParameterType.CATEGORICAL:
        return None if value in space.list else "is not one of the categorical list"
    number = _number(value)
    if number is None:
        return "is not a finite number"
    if param.parameter_type is ParameterType.DISCRETE:
        listed = (_number(v) for v in space.list)
        return None if number in {v for v in listed if v is not None} else "is not in the list"
    if param.parameter_type is ParameterType.INT and not _is_int(value):
        return "is not an integer"
    low, high = _number(space.min), _number(space.max)
    if low is None or high is None:
        return None
    if not low <= number <= high:
        return f"is outside [{space.min}, {space.max}]"
    step = _number(space.step) if space.step else None
    if step:
        ratio = (number - low) / step
        if abs(ratio - round(ratio)) > _STEP_TOLERANCE * max(1.0, abs(ratio)):
            return f"is not on the step grid {space.min} + k * {space.step}"
    return None


def resource_problem(param: Parameter, value: str) -> str | None:
    """Why ``value`` cannot be a scheduled resource of ``param`` (any range), or ``None``."""
    number = _number(value)
    if number is None:
        return "is not a finite number"
    if param.parameter_type is ParameterType.INT and not _is_int(value):
        return "is not an integer"
    if number <= 0:
        return "is not a positive resource"
    return None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _is_int(text: str) -> bool:
    stripped = text.strip()
    if stripped.lstrip("+-").isdigit() and stripped.isascii():
        return True
    number = _number(stripped)
    return number is not None and number.is_integer()
