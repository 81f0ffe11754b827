"""The gRPC servicer: a thin adapter from Katib's ``Suggestion`` API to :class:`Algorithm`.

Each request is decoded once (:mod:`katib.suggestion.proto`), the algorithm is built from the
experiment and its typed settings, and its points are encoded back. Status codes come only from
:func:`katib.api.status.grpc_errors`. Whatever the servicer caches between calls (decoded
trials, replayed designers) is a speed-up checked against the request, so any replica or a
restarted process answers the same request the same way. Work whose caller's deadline has
passed is abandoned between phases with DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import grpc

from katib.api import api_pb2 as pb
from katib.api.errors import InvalidArgument, KatibError
from katib.api.settings import parse_with_state
from katib.api.status import check_deadline, grpc_errors
from katib.suggestion import registry
from katib.suggestion.base import Algorithm, ExperimentInfo, SuggestResult
from katib.suggestion.history import History
from katib.suggestion.lazy import (
    LazyGetSuggestionsRequest,
    experiment_fingerprint,
    history_from_request,
    serialised_trials,
)
from katib.suggestion.proto import (
    algorithm_from_proto,
    algorithm_with_state,
    check_objective,
    experiment_from_proto,
    reply_from_suggestions,
)

logger = logging.getLogger(__name__)

#: Upper bound on ``current_request_number``; far above any sane parallelism.
MAX_REQUEST = 10_000


class SuggestionServicer:
    """Serve ``GetSuggestions`` and ``ValidateAlgorithmSettings`` for a set of algorithms.

    ``algorithms=None`` serves every registered algorithm; otherwise only the named ones (a
    request for another name is INVALID_ARGUMENT). Register it with :func:`add_to_server`,
    which reads ``GetSuggestions`` requests with their trials left serialised.
    """

    def __init__(self, algorithms: Iterable[str] | None = None) -> None:
        self.algorithms = None if algorithms is None else sorted(set(algorithms))
        for name in self.algorithms or ():
            registry.get(name)  # fail fast on typos at start-up

    def algorithm(self, experiment: pb.Experiment) -> tuple[type[Algorithm], Any, Any]:
        """The algorithm class with its parsed settings and echoed state."""
        name, pairs = algorithm_from_proto(experiment)
        if self.algorithms is not None and name not in self.algorithms:
            raise InvalidArgument(
                f"unknown algorithm name {name!r}; this service serves: "
                f"{', '.join(self.algorithms)}"
            )
        cls = registry.get(name)
        settings, state = parse_with_state(cls.settings_class, cls.state_class, pairs, name)
        return cls, settings, state

    def prepare(
        self, experiment: pb.Experiment, trials: Iterable[bytes] = ()
    ) -> tuple[type[Algorithm], ExperimentInfo, Any, Any]:
        """Decode and validate an experiment: the algorithm class, experiment, settings, state."""
        cls, settings, state = self.algorithm(experiment)
        info = experiment_from_proto(experiment)
        check_nas(cls, info)
        if cls.uses_objective:
            check_objective(experiment, list(trials))
        cls.check(info, settings)
        space = cls.space_for(info, settings)
        if space is not info.space:
            info = replace(info, space=space)
        return cls, info, settings, state

    @grpc_errors
    def ValidateAlgorithmSettings(
        self, request: pb.ValidateAlgorithmSettingsRequest, context: grpc.ServicerContext
    ) -> pb.ValidateAlgorithmSettingsReply:
        """OK if the settings (and the space, if any) suit the algorithm, else INVALID_ARGUMENT.

        As in Katib, an experiment without parameters or objective is checked for its settings
        only (the admission webhook checks the rest). With parameters, the algorithm also checks
        the space and makes one dry-run suggestion, so an experiment that passes validation
        cannot fail every later ``GetSuggestions``. Unexpected errors here become
        INVALID_ARGUMENT: Katib's controller would read INTERNAL as "valid".
        """
        experiment = request.experiment
        cls, settings, state = self.algorithm(experiment)
        spec = experiment.spec
        if not spec.parameter_specs.parameters and not spec.HasField("nas_config"):
            return pb.ValidateAlgorithmSettingsReply()
        info = experiment_from_proto(experiment)
        check_nas(cls, info)
        cls.check(info, settings)
        check_deadline(context, "validating the search space")
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
        self, request: Any, context: grpc.ServicerContext
    ) -> pb.GetSuggestionsReply:
        """Up to ``current_request_number`` new assignments; fewer once the space is exhausted.

        ``request`` is a :data:`~katib.suggestion.lazy.LazyGetSuggestionsRequest` (as the
        server reads it) or a ``GetSuggestionsRequest``.
        """
        count = request.current_request_number
        if not 0 <= count <= MAX_REQUEST:
            raise InvalidArgument(
                f"current_request_number must be between 0 and {MAX_REQUEST}, got {count}"
            )
        trials = serialised_trials(request)
        cls, info, settings, state = self.prepare(request.experiment, trials)
        check_deadline(context, "decoding the experiment")
        # Trials decode against the algorithm's space, which settings may widen.
        fingerprint = experiment_fingerprint(request.experiment) + repr(info.space).encode()
        history = history_from_request(trials, info, fingerprint)
        check_deadline(context, "reading the trials")
        result = cls(info, settings, state).propose(history, count)
        check_deadline(context, "suggesting")
        check_result(cls.name, result, count, history)
        reply = reply_from_suggestions(info.space, result.suggestions)
        reply.algorithm.CopyFrom(algorithm_with_state(request.experiment.spec.algorithm, result))
        return reply


def add_to_server(servicer: SuggestionServicer, server: grpc.Server) -> None:
    """Register ``servicer`` as Katib's ``api.v1.beta1.Suggestion`` service on ``server``.

    Like the generated ``add_SuggestionServicer_to_server``, except that ``GetSuggestions``
    requests are read as :data:`~katib.suggestion.lazy.LazyGetSuggestionsRequest`.
    """
    handlers = {
        "GetSuggestions": grpc.unary_unary_rpc_method_handler(
            servicer.GetSuggestions,
            request_deserializer=LazyGetSuggestionsRequest.FromString,
            response_serializer=pb.GetSuggestionsReply.SerializeToString,
        ),
        "ValidateAlgorithmSettings": grpc.unary_unary_rpc_method_handler(
            servicer.ValidateAlgorithmSettings,
            request_deserializer=pb.ValidateAlgorithmSettingsRequest.FromString,
            response_serializer=pb.ValidateAlgorithmSettingsReply.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("api.v1.beta1.Suggestion", handlers),)
    )
    server.add_registered_method_handlers(  # type: ignore[attr-defined]
        "api.v1.beta1.Suggestion", handlers
    )


def check_nas(cls: type[Algorithm], info: ExperimentInfo) -> None:
    """NAS algorithms need a nasConfig experiment, and every other algorithm parameters."""
    if (info.nas_config is not None) != cls.nas:
        raise InvalidArgument(
            f"algorithm {cls.name!r} needs experiment.spec.nas_config and no parameters"
            if cls.nas
            else f"algorithm {cls.name!r} needs experiment.spec.parameter_specs, not a nas_config"
        )


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
