"""``EarlyStoppingClient``: the early-stopping service as a controller sees it.

>>> with EarlyStoppingClient("127.0.0.1:6788") as es:                      # doctest: +SKIP
...     es.wait_ready(timeout=10)
...     es.validate("medianstop", [("start_step", "2")])
...     rules = es.rules(experiment, trials, db_address="127.0.0.1:6789")
...     evaluator = RuleEvaluator(rules, objective="loss", maximize=False)

It asks for rules in the ``any`` form (:mod:`katib.earlystopping.rules`) unless told otherwise.
A service that answers in that form echoes the metadata; one that does not (Katib's own) has
answered in Katib's form, and :meth:`EarlyStoppingClient.rule_set` says so, so that the
:class:`~katib.earlystopping.rules.RuleEvaluator` it builds applies Katib's evaluation. Status
codes come back as the project's errors: INVALID_ARGUMENT -> ``InvalidArgument``; UNAVAILABLE,
DEADLINE_EXCEEDED and CANCELLED (a service in its graceful stop cancels, unrun, the calls that
reach it after the stop began) -> ``Unavailable``; others are raised as the original
``grpc.RpcError``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health_pb2_grpc

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.errors import InvalidArgument, Unavailable
from katib.api.server import GRPC_OPTIONS, wait_serving
from katib.earlystopping.rules import SEMANTICS_KEY, Comparison, Rule, RuleSet, Semantics

HEALTH_NAME = "manager.v1beta1.EarlyStopping"
_UNAVAILABLE = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
)


def answered(call: Any) -> Semantics:
    """The form a ``GetEarlyStoppingRules`` reply is in, from its metadata (``katib`` unless
    the service echoed :data:`SEMANTICS_KEY`)."""
    for key, value in (*(call.initial_metadata() or ()), *(call.trailing_metadata() or ())):
        if key == SEMANTICS_KEY:
            text = value if isinstance(value, str) else value.decode()
            if text in tuple(Semantics):
                return Semantics(text)
    return Semantics.KATIB


def rule_from_proto(message: pb.EarlyStoppingRule) -> Rule:
    """A rule from Katib's message (``InvalidArgument`` for a value that is not a number)."""
    try:
        value = float(message.value)
    except ValueError:
        raise InvalidArgument(
            f"rule {message.name!r}: value {message.value!r} is not a number"
        ) from None
    comparison = (
        Comparison(message.comparison)
        if message.comparison in tuple(Comparison)
        else Comparison.EQUAL  # what Katib's controller makes of UNKNOWN_COMPARISON
    )
    return Rule(message.name, value, comparison, message.start_step)


class EarlyStoppingClient:
    """A client of an ``EarlyStopping`` service at ``address`` (``host:port``); thread-safe."""

    def __init__(
        self, address: str, timeout: float = 60.0, semantics: Semantics = Semantics.ANY
    ) -> None:
        self.address, self.timeout, self.semantics = address, timeout, semantics
        self._channel = grpc.insecure_channel(address, options=GRPC_OPTIONS)
        self._stub = api_pb2_grpc.EarlyStoppingStub(self._channel)
        self._health = health_pb2_grpc.HealthStub(self._channel)

    def validate(self, algorithm: str, settings: Sequence[tuple[str, str]] = ()) -> None:
        """``ValidateEarlyStoppingSettings``; ``InvalidArgument`` with the service's message."""
        request = pb.ValidateEarlyStoppingSettingsRequest()
        request.early_stopping.algorithm_name = algorithm
        for name, value in settings:
            request.early_stopping.algorithm_settings.add(name=name, value=value)
        self._call(self._stub.ValidateEarlyStoppingSettings, request)

    def rules(
        self, experiment: pb.Experiment, trials: Iterable[pb.Trial], db_address: str
    ) -> list[Rule]:
        """``GetEarlyStoppingRules`` for a trial created now (the rules of :meth:`rule_set`)."""
        return list(self.rule_set(experiment, trials, db_address).rules)

    def rule_set(
        self, experiment: pb.Experiment, trials: Iterable[pb.Trial], db_address: str
    ) -> RuleSet:
        """``GetEarlyStoppingRules``, with the form the service answered in: this client's
        when the service echoed :data:`SEMANTICS_KEY`, else Katib's."""
        request = pb.GetEarlyStoppingRulesRequest(
            experiment=experiment, trials=trials, db_manager_address=db_address
        )
        reply, call = self._call(
            self._stub.GetEarlyStoppingRules.with_call,
            request,
            [(SEMANTICS_KEY, self.semantics.value)],
        )
        return RuleSet(
            tuple(rule_from_proto(r) for r in reply.early_stopping_rules), answered(call)
        )

    def set_trial_status(self, trial_name: str) -> None:
        """``SetTrialStatus``: tell the service a trial was early stopped."""
        self._call(self._stub.SetTrialStatus, pb.SetTrialStatusRequest(trial_name=trial_name))

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until health answers SERVING; ``TimeoutError`` otherwise."""
        wait_serving(self._health, HEALTH_NAME, timeout, f"early stopping at {self.address}")

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> EarlyStoppingClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: Any, request: Any, metadata: Any = None) -> Any:
        try:
            return method(request, timeout=self.timeout, metadata=metadata)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument(details) from exc
            if code in _UNAVAILABLE:
                raise Unavailable(f"{self.address}: {code.name}: {details}") from exc
            raise
