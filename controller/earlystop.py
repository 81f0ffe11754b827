"""The early-stopping service as the controller uses it (Katib's ``EarlyStopping`` API).

The calls go through :class:`katib.earlystopping.client.EarlyStoppingClient`, which asks for
rules in the ``any`` form and reports the form the service answered in (Katib's own service
answers in Katib's "all rules met" form; see :mod:`katib.earlystopping.rules`). What is
controller-specific lives here: building Katib's requests from the controller's records (the
experiment with its algorithm settings overlaid, every trial, the DB manager's address), reading
the service's errors as the controller's, retrying while the service is unavailable (as the
suggestion client does), checking the rules of an untrusted reply, and ``SetTrialStatus``
errors logged rather than fatal (Katib never awaits that call either).

As Katib's controller does, ``ValidateEarlyStoppingSettings`` is called before the first trial
and ``GetEarlyStoppingRules`` for trials about to start; unlike Katib, the runner asks again
whenever a trial ends and gives the running trials the fresher rules.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import grpc

from katib.api.errors import FailedPrecondition, InvalidArgument, KatibError, Unavailable
from katib.controller import protos
from katib.controller.spec import Experiment
from katib.controller.trials import TrialRecord
from katib.earlystopping.client import EarlyStoppingClient
from katib.earlystopping.rules import Rule, RuleSet
from katib.suggestion.client import retry

logger = logging.getLogger(__name__)
T = TypeVar("T")


class EarlyStopping:
    """The early-stopping service at ``address``, in the controller's terms."""

    def __init__(
        self,
        address: str,
        cancelled: Callable[[], bool] = lambda: False,
        timeout: float = 60.0,
    ) -> None:
        self.address = address
        self.cancelled = cancelled
        self.client = EarlyStoppingClient(address, timeout=timeout)

    def validate(self, spec: Experiment) -> None:
        """ValidateEarlyStoppingSettings; ``InvalidArgument`` naming ``spec.earlyStopping`` if
        the service rejects them, ``FailedPrecondition`` if it cannot be asked."""
        early = spec.early_stopping
        if early is None:
            return
        settings = [(s.name, s.value) for s in early.algorithm_settings]
        try:
            self._retrying(lambda: self.client.validate(early.algorithm_name, settings))
        except InvalidArgument as exc:
            problems = getattr(exc, "problems", None) or [str(exc)]
            raise InvalidArgument([f"spec.earlyStopping: {p}" for p in problems]) from None
        except KatibError as exc:
            raise FailedPrecondition(
                f"ValidateEarlyStoppingSettings at {self.address} failed: {exc}"
            ) from None
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNIMPLEMENTED:
                return
            if exc.code() == grpc.StatusCode.UNKNOWN:  # Katib's Python services raise
                raise InvalidArgument(f"spec.earlyStopping: {exc.details()}") from None
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
    ) -> RuleSet:
        """GetEarlyStoppingRules; ``FailedPrecondition`` on an error or a malformed rule."""
        try:
            experiment, messages = protos.experiment(spec, overlay), protos.trials(spec, trials)
            answer = self._retrying(lambda: self.client.rule_set(experiment, messages, db_address))
        except KatibError as exc:
            raise FailedPrecondition(f"GetEarlyStoppingRules failed: {exc}") from None
        except grpc.RpcError as exc:
            raise FailedPrecondition(
                f"GetEarlyStoppingRules failed: {exc.code().name}: {exc.details()}"
            ) from None
        for index, rule in enumerate(answer.rules):
            _check(spec, index, rule)
        return answer

    def set_trial_status(self, trial_name: str) -> None:
        """SetTrialStatus for an early-stopped trial; failures are logged only."""
        try:
            self.client.set_trial_status(trial_name)
        except (KatibError, grpc.RpcError) as exc:
            logger.warning("SetTrialStatus(%s) at %s failed: %s", trial_name, self.address, exc)

    def close(self) -> None:
        """Close the channel."""
        self.client.close()

    def _retrying(self, call: Callable[[], T]) -> T:
        """``call()``, again after ``Unavailable`` (see :func:`katib.suggestion.client.retry`)."""
        return retry(
            call,
            lambda exc: isinstance(exc, Unavailable),
            lambda exc: f"early stopping: {exc}",
            self.cancelled,
        )


def _check(spec: Experiment, index: int, rule: Rule) -> None:
    """One rule of a reply: a metric of the experiment, a finite number, a step >= 0."""
    at = f"GetEarlyStoppingRules: rule {index}"
    if rule.name not in spec.objective.metric_names:
        raise FailedPrecondition(f"{at}: {rule.name!r} is not a metric of the experiment")
    if not math.isfinite(rule.value):
        raise FailedPrecondition(f"{at}: value {rule.value!r} is not finite")
    if rule.start_step < 0:
        raise FailedPrecondition(f"{at}: start_step {rule.start_step} is negative")
