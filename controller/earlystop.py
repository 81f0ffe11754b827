"""The early-stopping service as the controller uses it (Katib's ``EarlyStopping`` API).

Only an experiment with ``spec.earlyStopping`` talks to one, at ``--early-stopping-address``
(no service is built in yet). As Katib's controller does: ``ValidateEarlyStoppingSettings``
before the first trial; ``GetEarlyStoppingRules`` with the experiment (its algorithm settings
overlaid), every trial and the DB manager's address, for the trials about to start; and
``SetTrialStatus`` for a trial once it was early-stopped (errors there are logged, not fatal:
Katib never awaits that call either).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.errors import FailedPrecondition, InvalidArgument
from katib.api.server import GRPC_OPTIONS
from katib.controller import protos
from katib.controller.spec import Experiment
from katib.controller.trials import Comparison, StopRule, TrialRecord
from katib.suggestion.client import call_with_retry

logger = logging.getLogger(__name__)

_COMPARISONS = {
    pb.EQUAL: Comparison.EQUAL,
    pb.LESS: Comparison.LESS,
    pb.GREATER: Comparison.GREATER,
}


class EarlyStoppingClient:
    """Call an EarlyStopping service with deadlines and retries of transient errors."""

    def __init__(self, address: str, cancelled: Callable[[], bool] = lambda: False) -> None:
        self.address = address
        self.cancelled = cancelled
        self._channel = grpc.insecure_channel(address, options=GRPC_OPTIONS)
        self._stub = api_pb2_grpc.EarlyStoppingStub(self._channel)

    def validate(self, spec: Experiment) -> None:
        """ValidateEarlyStoppingSettings; ``InvalidArgument`` if the service rejects them."""
        early = spec.early_stopping
        if early is None:
            return
        request = pb.ValidateEarlyStoppingSettingsRequest(
            early_stopping=pb.EarlyStoppingSpec(
                algorithm_name=early.algorithm_name,
                algorithm_settings=[
                    pb.EarlyStoppingSetting(name=s.name, value=s.value)
                    for s in early.algorithm_settings
                ],
            )
        )
        try:
            self._call(self._stub.ValidateEarlyStoppingSettings, request)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return
            if exc.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNKNOWN):
                raise InvalidArgument(
                    f"spec.earlyStopping: validation failed: {exc.details()}"
                ) from None
            raise FailedPrecondition(
                f"ValidateEarlyStoppingSettings at {self.address} failed: "
                f"{exc.code().name}: {exc.details()}"
            ) from None

    def rules(
        self,
        spec: Experiment,
        trials: Sequence[TrialRecord],
        overlay: Mapping[str, str],
        db_address: str,
    ) -> tuple[StopRule, ...]:
        """GetEarlyStoppingRules; ``FailedPrecondition`` on an error or a malformed rule."""
        request = pb.GetEarlyStoppingRulesRequest(
            experiment=protos.experiment(spec, overlay),
            trials=protos.trials(spec, trials),
            db_manager_address=db_address,
        )
        try:
            reply = self._call(self._stub.GetEarlyStoppingRules, request)
        except grpc.RpcError as exc:
            raise FailedPrecondition(
                f"GetEarlyStoppingRules failed: {exc.code().name}: {exc.details()}"
            ) from None
        return tuple(_rule(spec, i, rule) for i, rule in enumerate(reply.early_stopping_rules))

    def set_trial_status(self, trial_name: str) -> None:
        """SetTrialStatus for an early-stopped trial; failures are logged only."""
        try:
            self._call(self._stub.SetTrialStatus, pb.SetTrialStatusRequest(trial_name=trial_name))
        except grpc.RpcError as exc:
            logger.warning(
                "SetTrialStatus(%s) at %s failed: %s: %s",
                trial_name,
                self.address,
                exc.code().name,
                exc.details(),
            )

    def _call(self, method: grpc.UnaryUnaryMultiCallable, request: object) -> Any:
        return call_with_retry(
            method, request, f"early-stopping service at {self.address}", self.cancelled
        )

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()


def _rule(spec: Experiment, index: int, rule: pb.EarlyStoppingRule) -> StopRule:
    """One rule of a reply, checked: a known metric, a finite number, a step >= 0.

    An unknown comparison is read as ``equal``, as Katib's controller does.
    """
    at = f"GetEarlyStoppingRules: rule {index}"
    if rule.name not in spec.objective.metric_names:
        raise FailedPrecondition(f"{at}: {rule.name!r} is not a metric of the experiment")
    try:
        value = float(rule.value)
    except ValueError:
        raise FailedPrecondition(f"{at}: value {rule.value!r} is not a number") from None
    if not math.isfinite(value):
        raise FailedPrecondition(f"{at}: value {rule.value!r} is not finite")
    if rule.start_step < 0:
        raise FailedPrecondition(f"{at}: start_step {rule.start_step} is negative")
    return StopRule(
        name=rule.name,
        value=value,
        comparison=_COMPARISONS.get(rule.comparison, Comparison.EQUAL),
        start_step=rule.start_step,
    )
