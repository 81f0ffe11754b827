"""The gRPC servicer: a thin adapter from Katib's ``Suggestion`` API to :class:`Algorithm`.

Each request is decoded once (:mod:`katib.suggestion.proto`), the algorithm is built from the
experiment and its typed settings, and its points are encoded back. Status codes come only from
:func:`katib.api.errors.grpc_errors`. The servicer keeps no state between calls, so any replica or
a restarted process answers the same request the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import grpc

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.errors import InvalidArgument, KatibError, grpc_errors
from katib.suggestion import registry
from katib.suggestion.base import Algorithm, ExperimentInfo, SuggestResult
from katib.suggestion.history import History
from katib.suggestion.proto import (
    algorithm_with_state,
    check_objective,
    experiment_fingerprint,
    experiment_from_proto,
    history_from_proto,
    reply_from_suggestions,
)
from katib.suggestion.settings import parse_with_state

logger = logging.getLogger(__name__)

#: Upper bound on ``current_request_number``; far above any sane parallelism.
MAX_REQUEST = 10_000


class SuggestionServicer(api_pb2_grpc.SuggestionServicer):
    """Serve ``GetSuggestions`` and ``ValidateAlgorithmSettings`` for a set of algorithms.

    ``algorithms=None`` serves every registered algorithm; otherwise only the named ones (a
    request for another name is INVALID_ARGUMENT).
    """

    def __init__(self, algorithms: Iterable[str] | None = None) -> None:
        self.algorithms = None if algorithms is None else sorted(set(algorithms))
        for name in self.algorithms or ():
            registry.get(name)  # fail fast on typos at start-up

    def prepare(
        self, experiment: pb.Experiment
    ) -> tuple[type[Algorithm], ExperimentInfo, Any, Any]:
        """Decode and validate an experiment: the algorithm class, experiment, settings, state."""
        info, name, pairs = experiment_from_proto(experiment)
        if self.algorithms is not None and name not in self.algorithms:
            raise InvalidArgument(
                f"unknown algorithm name {name!r}; this service serves: "
                f"{', '.join(self.algorithms)}"
            )
        cls = registry.get(name)
        if (info.nas_config is not None) != cls.nas:
            raise InvalidArgument(
                f"algorithm {name!r} needs experiment.spec.nas_config and no parameters"
                if cls.nas
                else f"algorithm {name!r} needs experiment.spec.parameter_specs, not a nas_config"
            )
        settings, state = parse_with_state(cls.settings_class, cls.state_class, pairs, name)
        if cls.uses_objective:
            check_objective(experiment)
        cls.check(info, settings)
        return cls, info, settings, state

    @grpc_errors
    def ValidateAlgorithmSettings(
        self, request: pb.ValidateAlgorithmSettingsRequest, context: grpc.ServicerContext
    ) -> pb.ValidateAlgorithmSettingsReply:
        """OK if the experiment's space and settings suit the algorithm, else INVALID_ARGUMENT.

        Beyond parsing, the algorithm makes one dry-run suggestion, so an experiment that passes
        validation cannot fail every later ``GetSuggestions``. Unexpected errors here become
        INVALID_ARGUMENT: Katib's controller would read INTERNAL as "valid".
        """
        cls, info, settings, state = self.prepare(request.experiment)
        try:
            cls(info, settings, state).propose(History(info.direction), 1)
        except KatibError:
            raise
        except Exception as exc:
            logger.exception("dry run of %s failed", cls.name)
            raise InvalidArgument(
                f"algorithm {cls.name!r} cannot run on this experiment: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return pb.ValidateAlgorithmSettingsReply()

    @grpc_errors
    def GetSuggestions(
        self, request: pb.GetSuggestionsRequest, context: grpc.ServicerContext
    ) -> pb.GetSuggestionsReply:
        """Up to ``current_request_number`` new assignments; fewer once the space is exhausted."""
        count = request.current_request_number
        if not 0 <= count <= MAX_REQUEST:
            raise InvalidArgument(
                f"current_request_number must be between 0 and {MAX_REQUEST}, got {count}"
            )
        cls, info, settings, state = self.prepare(request.experiment)
        history = history_from_proto(
            request.trials, info, experiment_fingerprint(request.experiment)
        )
        result = cls(info, settings, state).propose(history, count)
        check_result(cls.name, result, count, history)
        reply = reply_from_suggestions(info.space, result.suggestions)
        reply.algorithm.CopyFrom(algorithm_with_state(request.experiment.spec.algorithm, result))
        return reply


def check_result(algorithm: str, result: SuggestResult, count: int, history: History) -> None:
    """Reject an algorithm's answer that breaks the interface's contract (a bug: INTERNAL)."""
    if len(result.suggestions) > count:
        raise RuntimeError(
            f"{algorithm} returned {len(result.suggestions)} suggestions for {count} requested"
        )
    named = [s.name for s in result.suggestions if s.name is not None]
    if named:
        taken = set(history.names)
        clashes = sorted({n for n in named if n in taken or named.count(n) > 1})
        if clashes:
            raise RuntimeError(f"{algorithm} reused trial names: {', '.join(clashes)}")
