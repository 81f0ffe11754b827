"""Katib's ``nasConfig`` as domain objects, and its operations expanded into op ids.

A :class:`NasConfig` holds the graph (``num_layers``, ``input_sizes``, ``output_sizes``) and the
operations to choose from. Each :class:`Operation` has typed parameters; ENAS expands every
operation into the cartesian product of its parameters' values (first parameter varying
slowest), one *op id* per combination, numbered across operations in spec order, exactly as
Katib's ENAS service does. Validation follows Katib's ``validate_operations`` and names the
offending field. Nothing here imports protobuf or torch.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from katib.api.errors import InvalidArgument

#: Parameter types of an operation's parameters (Katib's names, lower case).
PARAM_TYPES = ("categorical", "discrete", "int", "double")
#: The most op ids a nasConfig may expand into (Katib's own examples have under 200); bounds
#: the memory and time one request can cost.
MAX_OP_IDS = 10_000


@dataclass(frozen=True)
class OpParameter:
    """One parameter of an operation: a list of values (categorical/discrete) or a range."""

    name: str
    type: str
    choices: tuple[str, ...] = ()
    low: str = ""
    high: str = ""
    step: str = ""

    def count(self) -> int:
        """How many values :meth:`values` gives, computed without listing them."""
        if self.type in ("categorical", "discrete"):
            return len(self.choices)
        width = Decimal(self.step) if self.step else Decimal(1)
        return max(0, int((Decimal(self.high) - Decimal(self.low)) / width) + 1)

    def values(self) -> list[Any]:
        """The parameter's values in order: strings for lists, numbers for ranges.

        INT ranges include both ends with ``step`` (default 1); DOUBLE ranges are an exact
        decimal arange from ``low`` to ``high`` inclusive (no float drift, never past ``high``).
        """
        if self.type in ("categorical", "discrete"):
            return list(self.choices)
        if self.type == "int":
            step = int(self.step) if self.step else 1
            return list(range(int(self.low), int(self.high) + 1, step))
        low, high, width = Decimal(self.low), Decimal(self.high), Decimal(self.step)
        count = int((high - low) / width) + 1
        return [float(low + k * width) for k in range(count)]


@dataclass(frozen=True)
class Operation:
    """An operation type (``convolution``, ``max_pooling``...) and its parameters."""

    type: str
    parameters: tuple[OpParameter, ...]


@dataclass(frozen=True)
class OpChoice:
    """One op id: an operation type with one value per parameter (Katib's ``Operation``)."""

    id: int
    type: str
    params: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """Katib's ``embedding`` entry: ``{opt_id, opt_type, opt_params}``."""
        return {"opt_id": self.id, "opt_type": self.type, "opt_params": dict(self.params)}


@dataclass(frozen=True)
class NasConfig:
    """Katib's ``NasConfig``: the graph and the candidate operations."""

    num_layers: int
    input_sizes: tuple[int, ...]
    output_sizes: tuple[int, ...]
    operations: tuple[Operation, ...]

    def op_choices(self) -> list[OpChoice]:
        """Every op id in order (see the module docstring)."""
        choices: list[OpChoice] = []
        for op in self.operations:
            names = [p.name for p in op.parameters]
            for combo in itertools.product(*(p.values() for p in op.parameters)):
                choices.append(
                    OpChoice(len(choices), op.type, dict(zip(names, combo, strict=True)))
                )
        return choices

    def darts_primitives(self) -> list[str]:
        """DARTS's ``search-space``: ``skip_connection`` as is, else ``<op>_<k>x<k>`` per value
        of the operation's first parameter (Katib's convention)."""
        names: list[str] = []
        for op in self.operations:
            if op.type == "skip_connection" or not op.parameters:
                names.append(op.type)
                continue
            for size in op.parameters[0].values():
                names.append(f"{op.type}_{size}x{size}")
        return names


def validate_operations(operations: tuple[Operation, ...], where: str) -> list[str]:
    """Katib's ``validate_operations`` rules, one message per problem.

    Differences: min <= max and step > 0 are checked, and an operation may have no parameters
    (it is then one choice), as Katib's own ``darts-gpu`` example's ``skip_connection`` needs.
    """
    problems: list[str] = []
    if not operations:
        problems.append(f"{where}: at least one operation is required")
    for i, op in enumerate(operations):
        at = f"{where}[{i}]"
        if not op.type:
            problems.append(f"{at}.operation_type: missing operation type")
        for j, p in enumerate(op.parameters):
            problems.extend(_parameter_problems(p, f"{at}.parameter_specs.parameters[{j}]"))
    return problems


def _parameter_problems(p: OpParameter, at: str) -> list[str]:
    if not p.name:
        return [f"{at}: missing parameter name"]
    at = f"{at} ({p.name!r})"
    if p.type not in PARAM_TYPES:
        return [f"{at}: missing or unknown parameter type"]
    if p.type in ("categorical", "discrete"):
        return [] if p.choices else [f"{at}: feasible_space.list must not be empty"]
    if not p.low or not p.high:
        return [f"{at}: feasible_space needs both min and max"]
    try:
        low, high = Decimal(p.low), Decimal(p.high)
        step = Decimal(p.step) if p.step else Decimal(1)
    except InvalidOperation:
        return [f"{at}: min, max and step must be numbers"]
    problems = []
    if p.type == "int" and any(v != v.to_integral_value() for v in (low, high, step)):
        problems.append(f"{at}: min, max and step of an int parameter must be integers")
    if p.type == "double" and not p.step:
        problems.append(f"{at}: feasible_space.step is required for a double parameter")
    if step <= 0:
        problems.append(f"{at}: feasible_space.step must be > 0, got {p.step}")
    if low > high:
        problems.append(f"{at}: min ({p.low}) must not exceed max ({p.high})")
    return problems


def validate_graph(config: NasConfig, where: str, need_sizes: bool) -> list[str]:
    """The graph: ``num_layers >= 1``; ENAS also needs input and output sizes."""
    problems = []
    if config.num_layers < 1:
        problems.append(f"{where}.graph_config.num_layers must be >= 1, got {config.num_layers}")
    if need_sizes and not config.input_sizes:
        problems.append(f"{where}.graph_config.input_sizes must not be empty")
    if need_sizes and not config.output_sizes:
        problems.append(f"{where}.graph_config.output_sizes must not be empty")
    return problems


def check_config(config: NasConfig | None, algorithm: str, need_sizes: bool) -> NasConfig:
    """The experiment's NAS config, or ``InvalidArgument`` listing every problem."""
    where = "experiment.spec.nas_config"
    if config is None:
        raise InvalidArgument(f"{where}: algorithm {algorithm!r} needs a nasConfig")
    problems = validate_graph(config, where, need_sizes)
    problems += validate_operations(config.operations, f"{where}.operations.operation")
    if problems:
        raise InvalidArgument(problems)
    total = 0
    for op in config.operations:
        size = 1
        for p in op.parameters:
            size *= p.count()
            if size > MAX_OP_IDS:
                break
        total += size
        if total > MAX_OP_IDS:
            raise InvalidArgument(
                f"{where}.operations: the operations expand into more than {MAX_OP_IDS} op ids "
                f"(every combination of each operation's parameter values is one op id)"
            )
    return config


def quote(value: Any) -> str:
    """JSON with ``"`` replaced by ``'``, as Katib passes JSON through quoted CLI arguments."""
    return json.dumps(value).replace('"', "'")


def unquote(text: str) -> Any:
    """The inverse of :func:`quote` (also accepts plain JSON)."""
    return json.loads(text.strip().strip('"').replace("'", '"'))
