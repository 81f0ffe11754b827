"""Reading ``GetSuggestions`` requests lazily: trials stay serialised until they are needed.

:data:`LazyGetSuggestionsRequest` reads the same bytes as Katib's ``GetSuggestionsRequest`` but
keeps each trial as its serialised ``Trial``. :func:`history_from_request` turns them into a
:class:`~katib.suggestion.history.History`: names first, the rest on demand, and trials already
seen for the same experiment are found by their bytes in the process's byte-bounded cache
(:func:`katib.api.cache.shared`), so a request whose trials are known costs one dictionary
look-up per trial, and a request that appends trials touches only the new ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import attrgetter, is_
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

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
from katib.api.trials import PointParser, Trial, trial_from_proto
from katib.suggestion.base import ExperimentInfo
from katib.suggestion.history import History
from katib.suggestion.space import Point, SearchSpace


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
    for i, entry in enumerate(entries):
        if entry.name is None:
            entry.name = parse_trial(_TrialName, entry.raw, i).name
            entry.nbytes += len(entry.name)
    return tuple(map(_NAME, entries))


def _decode(entries: Sequence[_Known], info: ExperimentInfo) -> list[Trial]:
    known = list(map(_TRIAL, entries))
    if not any(map(is_, known, repeat(None))):
        return known  # type: ignore[return-value]
    parse = _point_parser(info.space)
    decoded = []
    for i, entry in enumerate(entries):
        if entry.trial is None:
            message = parse_trial(pb.Trial, entry.raw, i)
            metric = info.objective_metric or message.spec.objective.objective_metric_name
            trial = trial_from_proto(message, metric, parse)
            entry.nbytes += estimate_bytes(trial)
            entry.trial = trial
        decoded.append(entry.trial)
    return decoded


def parse_trial(cls: Any, raw: bytes, index: int) -> Any:
    """One serialised trial as ``cls``; INVALID_ARGUMENT naming it when the bytes are not one."""
    try:
        return cls.FromString(raw)
    except DecodeError as exc:
        raise InvalidArgument(f"trials[{index}]: not a valid Trial message ({exc})") from None


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
