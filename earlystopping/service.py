"""The gRPC servicer: a thin adapter from Katib's ``EarlyStopping`` API to the algorithms.

``GetEarlyStoppingRules`` decodes the experiment and trials once, reads the curves an algorithm
wants from the DB service named in the request (or the server's ``--db-address``), computes
thresholds and answers rules in the form the client's evaluation needs (see
:mod:`katib.earlystopping.rules`). Nothing is kept between calls except a cache of finished
trials' curves, so a restarted service answers the same request the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.errors import InvalidArgument
from katib.api.status import grpc_errors
from katib.earlystopping import algorithms
from katib.earlystopping.algorithms import StoppingAlgorithm, TrialInfo, TrialState
from katib.earlystopping.curves import as_losses
from katib.earlystopping.history import CurveReader, check_address
from katib.earlystopping.rules import SEMANTICS_KEY, Rule, Semantics, for_semantics

logger = logging.getLogger(__name__)

_STATES = {
    pb.TrialStatus.CREATED: TrialState.CREATED,
    pb.TrialStatus.RUNNING: TrialState.RUNNING,
    pb.TrialStatus.SUCCEEDED: TrialState.SUCCEEDED,
    pb.TrialStatus.EARLYSTOPPED: TrialState.EARLY_STOPPED,
}


class EarlyStoppingServicer(api_pb2_grpc.EarlyStoppingServicer):
    """Serve ``ValidateEarlyStoppingSettings``, ``GetEarlyStoppingRules`` and ``SetTrialStatus``.

    ``db_address`` is used for requests whose ``db_manager_address`` is empty.
    """

    def __init__(self, db_address: str = "", reader: CurveReader | None = None) -> None:
        self.db_address = db_address
        self.reader = reader or CurveReader()

    def close(self) -> None:
        """Release the DB channels."""
        self.reader.close()

    @grpc_errors
    def ValidateEarlyStoppingSettings(
        self, request: pb.ValidateEarlyStoppingSettingsRequest, context: grpc.ServicerContext
    ) -> pb.ValidateEarlyStoppingSettingsReply:
        """OK if the algorithm exists and its settings parse, else INVALID_ARGUMENT."""
        build(request.early_stopping.algorithm_name, request.early_stopping.algorithm_settings)
        return pb.ValidateEarlyStoppingSettingsReply()

    @grpc_errors
    def GetEarlyStoppingRules(
        self, request: pb.GetEarlyStoppingRulesRequest, context: grpc.ServicerContext
    ) -> pb.GetEarlyStoppingRulesReply:
        """Rules for trials created now, from the curves of the request's trials."""
        semantics = semantics_of(context)
        context.set_trailing_metadata(((SEMANTICS_KEY, semantics.value),))  # the form answered
        spec = request.experiment.spec
        algorithm = build(
            spec.early_stopping.algorithm_name or algorithms.DEFAULT_ALGORITHM,
            spec.early_stopping.algorithm_settings,
        )
        wanted = [t for t in trials_from_proto(request.trials) if algorithm.wants(t)]
        if not wanted:
            return pb.GetEarlyStoppingRulesReply()
        objective, maximize = objective_of(spec.objective)
        address = check_address(request.db_manager_address or self.db_address)
        raw = self.reader.read(address, request.experiment.name, objective, wanted)
        curves = {name: as_losses(values, maximize) for name, values in raw.items()}
        rules = algorithms.make_rules(objective, maximize, *algorithm.thresholds(curves))
        reply = pb.GetEarlyStoppingRulesReply()
        for rule in for_semantics(rules, semantics):
            reply.early_stopping_rules.append(rule_to_proto(rule))
        logger.info(
            "%s: %d rule(s) from %d trial(s) (%s semantics)",
            request.experiment.name or "experiment",
            len(reply.early_stopping_rules),
            len(wanted),
            semantics,
        )
        return reply

    @grpc_errors
    def SetTrialStatus(
        self, request: pb.SetTrialStatusRequest, context: grpc.ServicerContext
    ) -> pb.SetTrialStatusReply:
        """Acknowledge that a collector stopped ``trial_name``.

        The local controller records the EarlyStopped condition itself, in its trial store;
        patching a Kubernetes Trial's status (what Katib's service does here) belongs to a
        Kubernetes backend, which this project does not have yet. The call is logged.
        """
        if not request.trial_name:
            raise InvalidArgument("trial_name is empty")
        logger.info("trial %s was early stopped", request.trial_name)
        return pb.SetTrialStatusReply()


def build(name: str, settings: Sequence[pb.EarlyStoppingSetting]) -> StoppingAlgorithm:
    """The named algorithm with its parsed settings (``InvalidArgument`` in Katib's words)."""
    cls = algorithms.get(name)
    pairs = [(s.name, s.value) for s in settings]
    return cls(algorithms.parse_settings(cls.settings_class, pairs, name))


def semantics_of(context: grpc.ServicerContext) -> Semantics:
    """The rule evaluation the client declared in :data:`SEMANTICS_KEY` (default ``katib``)."""
    for key, value in context.invocation_metadata() or ():
        if key == SEMANTICS_KEY:
            text = value if isinstance(value, str) else value.decode()
            try:
                return Semantics(text)
            except ValueError:
                choices = ", ".join(s.value for s in Semantics)
                raise InvalidArgument(
                    f"metadata {SEMANTICS_KEY} must be one of {choices}, got {text!r}"
                ) from None
    return Semantics.KATIB


def objective_of(objective: pb.ObjectiveSpec) -> tuple[str, bool]:
    """The objective metric's name and whether it is maximised."""
    problems = []
    if not objective.objective_metric_name:
        problems.append("experiment.spec.objective.objective_metric_name is empty")
    if objective.type not in (pb.MINIMIZE, pb.MAXIMIZE):
        problems.append(
            "experiment.spec.objective.type must be MINIMIZE or MAXIMIZE, got "
            + pb.ObjectiveType.Name(objective.type)
        )
    if problems:
        raise InvalidArgument(problems)
    return objective.objective_metric_name, objective.type == pb.MAXIMIZE


def trials_from_proto(trials: Sequence[pb.Trial]) -> list[TrialInfo]:
    """Decoded trials; a name given twice is ``InvalidArgument``."""
    seen: set[str] = set()
    out = []
    for index, trial in enumerate(trials):
        if trial.name in seen:
            raise InvalidArgument(f"trials[{index}].name {trial.name!r} appears twice")
        seen.add(trial.name)
        state = _STATES.get(trial.status.condition, TrialState.FAILED)
        out.append(TrialInfo(trial.name, state, trial.status.completion_time))
    return out


def rule_to_proto(rule: Rule) -> pb.EarlyStoppingRule:
    """A rule as Katib's message; the value as Python's shortest round-trip decimal."""
    return pb.EarlyStoppingRule(
        name=rule.name,
        value=repr(rule.value),
        comparison=int(rule.comparison),  # type: ignore[arg-type]
        start_step=rule.start_step,
    )
