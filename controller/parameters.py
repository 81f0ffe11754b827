"""Parse and validate ``spec.parameters`` and ``spec.metricsCollectorSpec``.

Katib's webhook rules (reference 6.2 rules 10-11, section 4) plus the checks it lacks (9.7):
min < max, step > 0, non-empty lists, numeric discrete values, unique names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from katib.controller import fields
from katib.controller.fields import Problems
from katib.controller.filters import FilterError, compile_filter
from katib.controller.spec import (
    DEFAULT_METRICS_PATH,
    DEFAULT_TFEVENT_DIR,
    CollectorKind,
    Distribution,
    FeasibleSpace,
    FileFormat,
    FileSystemPath,
    MetricsCollectorSpec,
    Parameter,
    ParameterType,
)

_TWO_GROUPS = compile_filter(r".*\(.*\).*\(.*\).*")  # Katib's webhook check, in RE2 too


def parse_parameters(problems: Problems, raw: list[Any], where: str) -> tuple[Parameter, ...]:
    """Every parameter of ``spec.parameters``, with problems for the bad ones."""
    params: list[Parameter] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            problems.add(at, "must be a mapping with name, parameterType and feasibleSpace")
            continue
        fields.unknown_keys(problems, item, ("name", "parameterType", "feasibleSpace"), at)
        name = fields.string(problems, item, "name", f"{at}.name", required=True)
        if name in seen:
            problems.add(
                f"{at}.name",
                f"duplicate parameter name {name!r} (also {where}"
                f"[{seen[name]}]); parameter names must be unique",
            )
        seen.setdefault(name, i)
        type_text = fields.string(
            problems, item, "parameterType", f"{at}.parameterType", required=True
        )
        try:
            ptype = ParameterType(type_text)
        except ValueError:
            if type_text:
                problems.add(
                    f"{at}.parameterType",
                    f"{type_text!r} is not one of double, int, discrete, categorical",
                )
            continue
        space = _feasible_space(problems, item, ptype, f"{at}.feasibleSpace")
        if space is not None:
            params.append(Parameter(name=name, parameter_type=ptype, feasible_space=space))
    return tuple(params)


def _feasible_space(
    problems: Problems, item: Mapping[str, Any], ptype: ParameterType, at: str
) -> FeasibleSpace | None:
    raw = fields.mapping(problems, item, "feasibleSpace", at, required=True)
    if raw is None:
        return None
    fields.unknown_keys(problems, raw, ("min", "max", "step", "list", "distribution"), at)
    if not raw:
        problems.add(at, "must not be empty")
        return None
    low = fields.string(problems, raw, "min", f"{at}.min", scalar=True)
    high = fields.string(problems, raw, "max", f"{at}.max", scalar=True)
    step = fields.string(problems, raw, "step", f"{at}.step", scalar=True)
    values = [
        fields.string(problems, {"v": v}, "v", f"{at}.list[{j}]", scalar=True)
        for j, v in enumerate(fields.sequence(problems, raw, "list", f"{at}.list"))
    ]
    dist_text = fields.string(problems, raw, "distribution", f"{at}.distribution")
    distribution: Distribution | None = None
    if dist_text:
        try:
            distribution = Distribution(dist_text)
        except ValueError:
            problems.add(
                f"{at}.distribution",
                f"{dist_text!r} is not one of uniform, logUniform, normal, logNormal",
            )
    if ptype in (ParameterType.INT, ParameterType.DOUBLE):
        _check_range(problems, ptype, low, high, step, distribution, at)
        if ptype is ParameterType.INT:  # "1.0" -> "1", as the suggestion services parse ints
            low, high, step = (_int_text(text) for text in (low, high, step))
        if "list" in raw:
            problems.add(f"{at}.list", f"a {ptype} parameter takes min/max/step, not a list")
        distribution = distribution or Distribution.UNIFORM
    else:
        for key in ("min", "max", "step"):
            if key in raw:
                problems.add(f"{at}.{key}", f"a {ptype} parameter takes a list, not {key}")
        _check_list(problems, ptype, values, at)
    return FeasibleSpace(
        min=low, max=high, step=step, list=tuple(values), distribution=distribution
    )


def _check_range(
    problems: Problems,
    ptype: ParameterType,
    low: str,
    high: str,
    step: str,
    distribution: Distribution | None,
    at: str,
) -> None:
    parse = _integral if ptype is ParameterType.INT else fields.number
    kind = "an integer" if ptype is ParameterType.INT else "a number"
    bounds = {}
    for key, text in (("min", low), ("max", high)):
        if not text:
            problems.add(f"{at}.{key}", f"is required for a {ptype} parameter")
            continue
        value = parse(text)
        if value is None:
            problems.add(f"{at}.{key}", f"must be {kind}, got {text!r}")
        else:
            bounds[key] = value
    # An int may be fixed (min == max: Hyperband's resource in Katib's example); a double
    # range must have room.
    if len(bounds) == 2 and not (
        bounds["min"] < bounds["max"]
        or (ptype is ParameterType.INT and bounds["min"] == bounds["max"])
    ):
        relation = "at most" if ptype is ParameterType.INT else "less than"
        problems.add(f"{at}.min", f"min ({low}) must be {relation} max ({high})")
    log_scale = distribution in (Distribution.LOG_UNIFORM, Distribution.LOG_NORMAL)
    if log_scale and "min" in bounds and bounds["min"] <= 0:
        problems.add(f"{at}.min", f"must be > 0 for a {distribution} distribution, got {low}")
    if step:
        step_value = parse(step)
        if step_value is None and ptype is ParameterType.INT and fields.number(step) is not None:
            problems.add(
                f"{at}.step",
                f"an int parameter needs a whole-number step, got {step!r}; use a double "
                "parameter for fractional steps",
            )
        elif step_value is None:
            problems.add(f"{at}.step", f"must be {kind}, got {step!r}")
        elif step_value <= 0:
            problems.add(f"{at}.step", f"must be greater than 0, got {step}")


def _integral(text: str) -> int | None:
    """``text`` as an int if it is an integer literal or a float with no fraction (``1.0``).

    Katib stores int bounds as strings and accepts ``min: 1.0``; so do we.
    """
    value = fields.whole(text)
    if value is not None:
        return value
    number = fields.number(text)
    return int(number) if number is not None and number.is_integer() else None


def _int_text(text: str) -> str:
    value = _integral(text) if text else None
    return text if value is None else str(value)


def _check_list(problems: Problems, ptype: ParameterType, values: list[str], at: str) -> None:
    if not values:
        problems.add(f"{at}.list", f"a {ptype} parameter needs a non-empty list of values")
        return
    seen: set[str] = set()
    for j, value in enumerate(values):
        if ptype is ParameterType.DISCRETE and fields.number(value) is None:
            problems.add(
                f"{at}.list[{j}]",
                f"discrete values must be numbers, got {value!r}; "
                "use a categorical parameter for strings",
            )
        if value in seen:
            problems.add(f"{at}.list[{j}]", f"duplicate value {value!r}")
        seen.add(value)


def parse_collector(
    problems: Problems, spec: Mapping[str, Any], where: str
) -> MetricsCollectorSpec:
    """``spec.metricsCollectorSpec`` with Katib's per-kind defaults (reference section 4)."""
    raw = fields.mapping(problems, spec, "metricsCollectorSpec", where) or {}
    fields.unknown_keys(problems, raw, ("source", "collector"), where)
    collector = fields.mapping(problems, raw, "collector", f"{where}.collector") or {}
    kind_text = fields.string(problems, collector, "kind", f"{where}.collector.kind") or "StdOut"
    try:
        kind = CollectorKind(kind_text)
    except ValueError:
        problems.add(
            f"{where}.collector.kind",
            f"{kind_text!r} is not one of {', '.join(k.value for k in CollectorKind)}",
        )
        return MetricsCollectorSpec()
    source = fields.mapping(problems, raw, "source", f"{where}.source") or {}
    filters = _filters(problems, source, f"{where}.source.filter")
    path = _file_system_path(problems, kind, source, f"{where}.source.fileSystemPath")
    if path is not None and path.format is FileFormat.JSON and filters:
        problems.add(f"{where}.source.filter", "a JSON metrics file takes no filter")
    return MetricsCollectorSpec(kind=kind, file_system_path=path, filters=filters)


def _filters(problems: Problems, source: Mapping[str, Any], at: str) -> tuple[str, ...]:
    raw = fields.mapping(problems, source, "filter", at) or {}
    result = []
    formats = fields.sequence(problems, raw, "metricsFormat", f"{at}.metricsFormat")
    for i, item in enumerate(formats):
        path = f"{at}.metricsFormat[{i}]"
        if not isinstance(item, str) or not item:
            problems.add(path, "must be a non-empty regular expression")
            continue
        try:
            compiled = compile_filter(item)
        except FilterError as exc:
            problems.add(path, f"invalid regular expression {item!r}: {exc}")
            continue
        if compiled.groups < 2 or not _TWO_GROUPS.fullmatch(item):
            problems.add(path, f"{item!r} needs two capture groups: (metric name)(value)")
            continue
        result.append(item)
    return tuple(result)


def _file_system_path(
    problems: Problems, kind: CollectorKind, source: Mapping[str, Any], at: str
) -> FileSystemPath | None:
    raw = fields.mapping(problems, source, "fileSystemPath", at)
    if kind in (CollectorKind.STDOUT, CollectorKind.FILE):
        raw = raw or {}
        path = fields.string(problems, raw, "path", f"{at}.path") or DEFAULT_METRICS_PATH
        fs_kind = fields.string(problems, raw, "kind", f"{at}.kind") or "File"
        fmt_text = fields.string(problems, raw, "format", f"{at}.format") or "TEXT"
        if not path.startswith("/"):
            problems.add(f"{at}.path", f"must be an absolute path, got {path!r}")
        _check_confined(problems, path, f"{at}.path")
        if fs_kind != "File":
            problems.add(f"{at}.kind", f"must be File for a {kind} collector, got {fs_kind!r}")
        try:
            fmt = FileFormat(fmt_text)
        except ValueError:
            problems.add(f"{at}.format", f"must be TEXT or JSON, got {fmt_text!r}")
            fmt = FileFormat.TEXT
        if kind is CollectorKind.STDOUT and fmt is not FileFormat.TEXT:
            problems.add(f"{at}.format", "a StdOut collector reads TEXT")
        return FileSystemPath(path=path, kind="File", format=fmt)
    if kind is CollectorKind.TENSORFLOW_EVENT:
        raw = raw or {}
        path = fields.string(problems, raw, "path", f"{at}.path") or DEFAULT_TFEVENT_DIR
        if not path.startswith("/"):
            problems.add(f"{at}.path", f"must be an absolute path, got {path!r}")
        _check_confined(problems, path, f"{at}.path")
        if raw.get("format"):
            problems.add(f"{at}.format", "must be empty for a TensorFlowEvent collector")
        return FileSystemPath(path=path, kind="Directory", format=None)
    return None


def _check_confined(problems: Problems, path: str, at: str) -> None:
    """Refuse ``..`` in a metrics path: in a pod the path lies on the trial's own metrics
    volume; locally it is re-rooted in the trial's directory, and ``..`` would climb out of it
    (trials sharing one file, or writing outside the results directory)."""
    if ".." in path.split("/"):
        problems.add(
            at,
            f"must not contain '..' (got {path!r}); the metrics file stays in the trial's "
            "own directory",
        )
    elif "\x00" in path:
        problems.add(at, "must not contain a NUL character")
