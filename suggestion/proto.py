"""Protobuf <-> domain conversion for the suggestion service (the only module that does it).

Errors in the experiment name the offending field, e.g.
``experiment.spec.parameter_specs.parameters[1] ('lr'): min (2) must not exceed max (1)``.

``GetSuggestions`` requests are read as :data:`LazyGetSuggestionsRequest`: the same wire format
as Katib's ``GetSuggestionsRequest``, but with each trial kept as its serialised bytes, so a
request whose trials the service has seen before costs one dictionary look-up per trial
instead of a full parse (see :func:`history_from_request`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter, is_
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from katib.api import api_pb2 as pb
from katib.api.cache import (
    DICT_ENTRY_BYTES,
    OBJECT_BYTES,
    SEQ_ITEM_BYTES,
    STR_BYTES,
    ByteLRU,
    estimate_bytes,
    shared,
)
from katib.api.errors import InvalidArgument
from katib.api.settings import format_state
from katib.api.trials import Direction, PointParser, Trial, trial_from_proto
from katib.suggestion.base import ExperimentInfo, Suggestion, SuggestResult
from katib.suggestion.history import History
from katib.suggestion.space import Distribution, ParameterSpec, ParameterType, Point, SearchSpace

logger = logging.getLogger(__name__)

#: The most parameters an experiment may have (INVALID_ARGUMENT beyond it). Far above any real
#: tuning problem; it bounds the work one request can cause, and keeps every algorithm inside
#: its own limits (scipy's Sobol engine, which TPE and ``sobol`` use, stops at 21 201).
MAX_PARAMETERS = 10_000

_TYPES = {
    pb.DOUBLE: ParameterType.DOUBLE,
    pb.INT: ParameterType.INT,
    pb.DISCRETE: ParameterType.DISCRETE,
    pb.CATEGORICAL: ParameterType.CATEGORICAL,
}
_DISTRIBUTIONS = {
    pb.DISTRIBUTION_UNSPECIFIED: Distribution.UNIFORM,
    pb.UNIFORM: Distribution.UNIFORM,
    pb.LOG_UNIFORM: Distribution.LOG_UNIFORM,
    pb.NORMAL: Distribution.NORMAL,
    pb.LOG_NORMAL: Distribution.LOG_NORMAL,
}
_TYPES_OUT = {kind: number for number, kind in _TYPES.items()}
_DISTRIBUTIONS_OUT = {
    Distribution.UNIFORM: pb.UNIFORM,
    Distribution.LOG_UNIFORM: pb.LOG_UNIFORM,
    Distribution.NORMAL: pb.NORMAL,
    Distribution.LOG_NORMAL: pb.LOG_NORMAL,
}


def _lazy_messages() -> tuple[Any, Any]:
    """Message classes reading the same bytes as Katib's, with trials left serialised."""
    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="katib/suggestion/lazy.proto",
        package="katib.suggestion.lazy",
        syntax="proto3",
        dependency=[pb.DESCRIPTOR.name],
    )
    request = file.message_type.add(name="LazyGetSuggestionsRequest")
    request.field.add(
        name="experiment",
        number=1,
        type=field.TYPE_MESSAGE,
        type_name=".api.v1.beta1.Experiment",
        label=field.LABEL_OPTIONAL,
    )
    request.field.add(name="trials", number=2, type=field.TYPE_BYTES, label=field.LABEL_REPEATED)
    for name, number in (("current_request_number", 4), ("total_request_number", 5)):
        request.field.add(
            name=name, number=number, type=field.TYPE_INT32, label=field.LABEL_OPTIONAL
        )
    name_only = file.message_type.add(name="TrialName")
    name_only.field.add(name="name", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(file.name)
    except KeyError:
        pool.Add(file)
    return tuple(  # type: ignore[return-value]
        message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{file.package}.{n}"))
        for n in ("LazyGetSuggestionsRequest", "TrialName")
    )


#: ``GetSuggestionsRequest`` with ``trials`` as ``repeated bytes`` (one serialised ``Trial``
#: each); wire-identical to Katib's message.
LazyGetSuggestionsRequest, _TrialName = _lazy_messages()


def serialised_trials(request: Any) -> list[bytes]:
    """The request's trials as serialised ``Trial`` messages, whichever class it was read as."""
    if isinstance(request, pb.GetSuggestionsRequest):
        return [t.SerializeToString() for t in request.trials]
    return list(request.trials)


def space_from_proto(specs: Sequence[pb.ParameterSpec]) -> SearchSpace:
    """Build the search space, reporting every bad parameter at once."""
    where = "experiment.spec.parameter_specs.parameters"
    if not specs:
        raise InvalidArgument(f"{where}: the experiment has no parameters")
    if len(specs) > MAX_PARAMETERS:
        raise InvalidArgument(
            f"{where}: {len(specs)} parameters; this service accepts at most {MAX_PARAMETERS}"
        )
    params: list[ParameterSpec] = []
    problems: list[str] = []
    for i, spec in enumerate(specs):
        field = f"{where}[{i}] ({spec.name!r})"
        ptype = _TYPES.get(spec.parameter_type)
        if ptype is None:
            problems.append(
                f"{field}: parameter_type must be DOUBLE, INT, DISCRETE or CATEGORICAL"
            )
            continue
        fs = spec.feasible_space
        distribution = _DISTRIBUTIONS.get(fs.distribution)
        if distribution is None:
            problems.append(f"{field}: unknown distribution {fs.distribution}")
            continue
        try:
            params.append(
                ParameterSpec.from_strings(
                    spec.name,
                    ptype,
                    low=fs.min,
                    high=fs.max,
                    step=fs.step,
                    choices=list(fs.list),
                    distribution=distribution,
                )
            )
        except InvalidArgument as exc:
            problems.extend(f"{where}[{i}]: {p}" for p in exc.problems)
    if problems:
        raise InvalidArgument(problems)
    try:
        return SearchSpace(tuple(params))
    except InvalidArgument as exc:
        raise InvalidArgument([f"{where}: {p}" for p in exc.problems]) from None


def cached_space(specs: pb.ExperimentSpec.ParameterSpecs) -> SearchSpace:
    """:func:`space_from_proto`, remembered by the specs' bytes in the shared cache.

    Spaces are immutable, so requests of one experiment share one (and the per-space
    precomputation its parameters cache).
    """
    if len(specs.parameters) > MAX_PARAMETERS:
        return space_from_proto(specs.parameters)  # raises, naming the limit
    raw = specs.SerializeToString(deterministic=True)
    key = ("space", raw)
    store = shared()
    space: SearchSpace | None = store.get(key)
    if space is None:
        space = space_from_proto(specs.parameters)
        store.put(key, space, estimate_bytes(space) + len(raw) + STR_BYTES)
    return space


def parameter_to_proto(spec: ParameterSpec) -> pb.ParameterSpec:
    """One parameter as Katib's ``ParameterSpec`` (min/max/step strings, or the list).

    The inverse of :func:`space_from_proto` for one parameter, used by clients that build
    experiments from domain objects (the benchmark harness).
    """
    fs = pb.FeasibleSpace()
    if spec.is_numeric_range:
        assert spec.low is not None and spec.high is not None
        fs.distribution = _DISTRIBUTIONS_OUT[spec.distribution]
        fs.min, fs.max = spec.format(spec.low), spec.format(spec.high)
        if spec.step is not None:
            fs.step = str(int(spec.step)) if spec.type is ParameterType.INT else repr(spec.step)
    else:
        fs.list.extend(spec.choices)
    return pb.ParameterSpec(
        name=spec.name, parameter_type=_TYPES_OUT[spec.type], feasible_space=fs
    )


def algorithm_from_proto(experiment: pb.Experiment) -> tuple[str, list[tuple[str, str]]]:
    """The algorithm's name and its ``(name, value)`` setting pairs."""
    algorithm = experiment.spec.algorithm
    if not algorithm.algorithm_name:
        raise InvalidArgument("experiment.spec.algorithm.algorithm_name must not be empty")
    return algorithm.algorithm_name, [(s.name, s.value) for s in algorithm.algorithm_settings]


def experiment_from_proto(experiment: pb.Experiment) -> ExperimentInfo:
    """The experiment as a domain object (its search space decoded and validated).

    ``objective_metric`` is the experiment's ``objective_metric_name``, possibly empty: trials
    are then scored by the metric named in their own ``spec.objective``, as Katib's services
    do.
    """
    spec = experiment.spec
    space = cached_space(spec.parameter_specs)
    objective = spec.objective
    direction = Direction.MAXIMIZE if objective.type == pb.MAXIMIZE else Direction.MINIMIZE
    return ExperimentInfo(
        name=experiment.name,
        space=space,
        direction=direction,
        objective_metric=objective.objective_metric_name,
        max_trial_count=spec.max_trial_count or None,
        parallel_trial_count=spec.parallel_trial_count or None,
    )


def check_objective(experiment: pb.Experiment, trials: Sequence[bytes] = ()) -> None:
    """Model-based algorithms need a direction and a metric name.

    The metric name may come from the trials' ``spec.objective`` instead of the experiment's
    (Katib's services read each trial's own); it is then checked on the first trial.
    """
    objective = experiment.spec.objective
    problems = []
    if objective.type not in (pb.MINIMIZE, pb.MAXIMIZE):
        problems.append("experiment.spec.objective.type must be MINIMIZE or MAXIMIZE")
    if not objective.objective_metric_name and trials:
        first = pb.Trial.FromString(trials[0])
        if not first.spec.objective.objective_metric_name:
            problems.append(
                "experiment.spec.objective.objective_metric_name is empty, and so is "
                f"trials[0].spec.objective.objective_metric_name (trial {first.name!r}): "
                "name the objective metric in one of them"
            )
    if problems:
        raise InvalidArgument(problems)


def history_from_request(
    trials: Sequence[bytes],
    info: ExperimentInfo,
    fingerprint: bytes = b"",
    cache: ByteLRU | None = None,
) -> History:
    """The request's trials (serialised ``Trial`` messages) as a :class:`History`.

    A trial is parsed only as far as it is needed: its name up front (a :class:`History` must
    know them), the rest only when an algorithm reads :attr:`History.trials`. With a
    ``fingerprint`` (see :func:`experiment_fingerprint`), trials already seen for the same
    experiment are looked up by their bytes in the process's byte-bounded cache
    (:func:`katib.api.cache.shared`, or ``cache``): identical bytes decode identically, so a
    hit cannot change an answer, and a request whose trials are all known costs one dict
    look-up per trial. Each request replaces its experiment's entry with exactly its trials.
    """
    if not fingerprint:
        unkeyed = [_Known(raw) for raw in trials]
        return History(
            info.direction, loader=lambda: _decode(unkeyed, info), names=_names(unkeyed)
        )
    trials = trials if isinstance(trials, list) else list(trials)
    store = cache if cache is not None else shared()
    key = ("trials", fingerprint)
    previous: _Seen | None = store.get(key)
    if previous is None:
        seen = _Seen.first(trials)
    elif previous.raw == trials and previous.history is not None:
        return previous.history  # the same trials as last time: reuse what was derived
    else:
        seen = previous.next(trials)
    store.put(key, seen, seen.nbytes())

    def load() -> list[Trial]:
        decoded = _decode(seen.entries, info)
        seen.recharge()
        if store.get(key) is seen:  # re-charge now that the trials are decoded
            store.put(key, seen, seen.nbytes())
        return decoded

    history = History(info.direction, loader=load, names=seen.names)
    history.__dict__["sorted_names"] = "\n".join(seen.sorted_names).encode()
    seen.history = history
    return history


def history_from_proto(trials: Sequence[pb.Trial], info: ExperimentInfo) -> History:
    """:func:`history_from_request` for trial messages (tests and in-process callers)."""
    return history_from_request([t.SerializeToString() for t in trials], info)


class _Known:
    """One trial seen by the service: its bytes' name, then its decoded :class:`Trial`.

    Shared between requests of one experiment; filled in at most once per field (two requests
    racing fill in equal values).
    """

    __slots__ = ("name", "nbytes", "raw", "trial")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.name: str | None = None
        self.trial: Trial | None = None
        self.nbytes = KNOWN_BYTES + len(raw)


class _Seen:
    """An experiment's entry in the cache: its last request's trials, by their bytes.

    ``index`` maps every trial's bytes to its :class:`_Known` entry. A request that extends
    the previous one (new trials appended, the usual order of a local controller) extends
    ``index`` in place and touches only the new trials; any other request rebuilds it, so it
    never holds more than the last request's trials (plus those of one superseded request
    after a rebuild raced with an extension).
    """

    __slots__ = ("entries", "history", "index", "names", "raw", "sorted_names", "total")

    def __init__(
        self,
        raw: list[bytes],
        entries: list[_Known],
        index: dict[bytes, _Known],
        names: tuple[str, ...],
        sorted_names: list[str],
    ) -> None:
        self.raw = raw
        self.entries = entries
        self.index = index
        self.names = names
        self.sorted_names = sorted_names
        self.total = sum(map(_NBYTES, index.values()))
        #: The History built for exactly ``raw``: an identical request reuses it (and what it
        #: derived: completed trials, taken keys).
        self.history: History | None = None

    @classmethod
    def first(cls, raw: list[bytes], known: dict[bytes, _Known] | None = None) -> _Seen:
        """The entry for ``raw``, reusing the entries of ``known`` trials."""
        entries = _lookup(raw, known or {})
        names = _names(entries)
        return cls(raw, entries, dict(zip(raw, entries, strict=True)), names, sorted(names))

    def next(self, raw: list[bytes]) -> _Seen:
        """The entry for the request after this one."""
        n = len(self.raw)
        if len(raw) <= n or raw[:n] != self.raw:
            return _Seen.first(raw, self.index)
        tail = raw[n:]
        added = _lookup(tail, self.index)
        new_names = _names(added)
        self.index.update(zip(tail, added, strict=True))
        seen = _Seen.__new__(_Seen)
        seen.raw, seen.entries, seen.index = raw, self.entries + added, self.index
        seen.names = self.names + new_names
        seen.sorted_names = sorted([*self.sorted_names, *new_names])  # nearly sorted: O(n)
        seen.total = self.total + sum(map(_NBYTES, added))
        seen.history = None
        return seen

    def recharge(self) -> None:
        """Recount the entries' bytes (after decoding grew them)."""
        self.total = sum(map(_NBYTES, self.index.values()))

    def nbytes(self) -> int:
        """The charge: entries, their bytes and names, and the per-request lists."""
        names = sum(map(len, self.sorted_names)) + STR_BYTES
        lists = 3 * SEQ_ITEM_BYTES * len(self.raw)
        return OBJECT_BYTES + names + lists + self.total


def _lookup(raw: list[bytes], index: dict[bytes, _Known]) -> list[_Known]:
    found: list[_Known | None] = list(map(index.get, raw))
    if None in found:
        fresh: dict[bytes, _Known] = {}
        for i, entry in enumerate(found):
            if entry is None:
                entry = fresh.get(raw[i])
                if entry is None:
                    entry = fresh[raw[i]] = _Known(raw[i])
                found[i] = entry
    return found  # type: ignore[return-value]


_NBYTES = attrgetter("nbytes")
_NAME = attrgetter("name")
_TRIAL = attrgetter("trial")

#: What a cached trial costs besides its bytes: the dict slot, the entry and its name.
KNOWN_BYTES = DICT_ENTRY_BYTES + OBJECT_BYTES + 2 * STR_BYTES


def _names(entries: Sequence[_Known]) -> tuple[str, ...]:
    names = tuple(map(_NAME, entries))
    if None not in names:
        return names  # type: ignore[return-value]
    for entry in entries:
        if entry.name is None:
            entry.name = _TrialName.FromString(entry.raw).name
            entry.nbytes += len(entry.name)
    return tuple(map(_NAME, entries))


def _decode(entries: Sequence[_Known], info: ExperimentInfo) -> list[Trial]:
    known = list(map(_TRIAL, entries))
    if not any(map(is_, known, repeat(None))):
        return known  # type: ignore[return-value]
    parse = _point_parser(info.space)
    decoded = []
    for entry in entries:
        if entry.trial is None:
            message = pb.Trial.FromString(entry.raw)
            metric = info.objective_metric or message.spec.objective.objective_metric_name
            trial = trial_from_proto(message, metric, parse)
            entry.nbytes += estimate_bytes(trial)
            entry.trial = trial
        decoded.append(entry.trial)
    return decoded


def _point_parser(space: SearchSpace) -> PointParser:
    def parse(assignments: dict[str, str]) -> tuple[Point, tuple[str, ...]]:
        point = space.parse(assignments)
        return point, space.key(point)

    return parse


def experiment_fingerprint(experiment: pb.Experiment) -> bytes:
    """What decoding a trial depends on: the experiment's name, parameters and objective."""
    spec = experiment.spec
    return b"\0".join(
        (
            experiment.name.encode(),
            spec.parameter_specs.SerializeToString(deterministic=True),
            spec.objective.SerializeToString(deterministic=True),
        )
    )


def reply_from_suggestions(
    space: SearchSpace, suggestions: Sequence[Suggestion]
) -> pb.GetSuggestionsReply:
    """Suggestions as Katib assignments, with their trial names and labels when set."""
    reply = pb.GetSuggestionsReply()
    for suggestion in suggestions:
        item = reply.parameter_assignments.add()
        for name, value in space.format(suggestion.point):
            item.assignments.add(name=name, value=value)
        if suggestion.name is not None:
            item.trial_name = suggestion.name
        for key, value in suggestion.labels.items():
            item.labels[key] = value
    return reply


def algorithm_with_state(spec: pb.AlgorithmSpec, result: SuggestResult) -> pb.AlgorithmSpec:
    """The request's algorithm spec with the result's state overlaid (Katib's merge by name).

    Without a state the spec is echoed unchanged, as Katib's own services do.
    """
    echoed = pb.AlgorithmSpec()
    echoed.CopyFrom(spec)
    if result.state is None:
        return echoed
    state = dict(format_state(result.state))
    for pair in echoed.algorithm_settings:
        if pair.name in state:
            pair.value = state.pop(pair.name)
    for name, value in state.items():
        echoed.algorithm_settings.add(name=name, value=value)
    return echoed
