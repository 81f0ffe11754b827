"""Drive a Katib suggestion service over gRPC exactly as Katib's controller does.

For every run the harness builds an ``api_pb2.Experiment`` (parameters, objective ``MINIMIZE`` on
metric ``loss``, algorithm name with ``random_state = seed``, max/parallel trial counts), calls
``ValidateAlgorithmSettings`` once, then repeatedly calls ``GetSuggestions`` with *every* trial so
far — SUCCEEDED with its observation, RUNNING while its value is pending, FAILED without metrics —
and ``current_request_number = k``. Settings the service returns in ``reply.algorithm`` are
overlaid onto later requests by name, as the controller does. A reply with fewer assignments than
requested means the space is exhausted.

Our own algorithms are served by one in-process server (:class:`LocalServer`) on
``127.0.0.1:0``; any other Katib-compatible service is reached by address (:func:`parse_target`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import grpc

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.server import GRPC_OPTIONS, RunningServer, start
from katib.bench.optimizer import Contender, RunSettings
from katib.bench.problems import Problem
from katib.suggestion.proto import parameter_to_proto
from katib.suggestion.space import Point, SearchSpace

logger = logging.getLogger(__name__)

METRIC = "loss"
#: The controller's deadline for one GetSuggestions call (seconds).
DEADLINE = 60.0


class ServiceError(RuntimeError):
    """A suggestion service rejected the experiment or failed; the message says which RPC."""


def experiment_to_proto(
    name: str,
    space: SearchSpace,
    algorithm: str,
    settings: Iterable[tuple[str, str]],
    budget: int,
    batch: int,
) -> pb.Experiment:
    """The experiment the controller would send for this run."""
    spec = pb.ExperimentSpec(
        objective=pb.ObjectiveSpec(type=pb.MINIMIZE, objective_metric_name=METRIC),
        algorithm=pb.AlgorithmSpec(
            algorithm_name=algorithm,
            algorithm_settings=[pb.AlgorithmSetting(name=k, value=v) for k, v in settings],
        ),
        parallel_trial_count=batch,
        max_trial_count=budget,
    )
    spec.parameter_specs.parameters.extend(parameter_to_proto(p) for p in space.params)
    return pb.Experiment(name=name, spec=spec)


class ServiceOptimizer:
    """One run driven through a ``Suggestion`` stub (see the module docstring for the protocol)."""

    def __init__(
        self, stub: api_pb2_grpc.SuggestionStub, experiment: pb.Experiment, space: SearchSpace
    ) -> None:
        self.stub = stub
        self.experiment = experiment
        self.space = space
        self.trials: list[pb.Trial] = []
        self._validate()

    def _validate(self) -> None:
        request = pb.ValidateAlgorithmSettingsRequest(experiment=self.experiment)
        try:
            self.stub.ValidateAlgorithmSettings(request, timeout=DEADLINE)
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.UNIMPLEMENTED:  # the controller treats it as valid
                return
            raise ServiceError(
                f"ValidateAlgorithmSettings: {exc.code().name}: {exc.details()}"
            ) from None

    def ask(self, count: int) -> list[Point]:
        """Call GetSuggestions with the whole history; new trials start RUNNING."""
        request = pb.GetSuggestionsRequest(
            experiment=self.experiment,
            trials=self.trials,
            current_request_number=count,
            total_request_number=len(self.trials) + count,
        )
        try:
            reply = self.stub.GetSuggestions(request, timeout=DEADLINE)
        except grpc.RpcError as exc:
            raise ServiceError(f"GetSuggestions: {exc.code().name}: {exc.details()}") from None
        if len(reply.parameter_assignments) > count:
            raise ServiceError(
                f"GetSuggestions returned {len(reply.parameter_assignments)} "
                f"assignments for {count} requested"
            )
        self._overlay(reply.algorithm)
        points = []
        for item in reply.parameter_assignments:
            values = {a.name: a.value for a in item.assignments}
            try:
                point = self.space.parse(values)
            except ValueError as exc:
                raise ServiceError(f"GetSuggestions returned an infeasible point: {exc}") from None
            name = item.trial_name or f"{self.experiment.name}-{len(self.trials):04d}"
            trial = pb.Trial(name=name)
            trial.spec.objective.CopyFrom(self.experiment.spec.objective)
            trial.spec.parameter_assignments.assignments.extend(item.assignments)
            trial.status.condition = pb.TrialStatus.RUNNING
            self.trials.append(trial)
            points.append(point)
        return points

    def tell(self, index: int, value: float | None) -> None:
        """Mark the trial SUCCEEDED with its ``loss`` observation, or FAILED."""
        status = self.trials[index].status
        if value is None:
            status.condition = pb.TrialStatus.FAILED
            return
        status.condition = pb.TrialStatus.SUCCEEDED
        status.observation.metrics.add(name=METRIC, value=repr(float(value)))

    def close(self) -> None:
        """Nothing to release: the channel belongs to the contender."""

    def _overlay(self, returned: pb.AlgorithmSpec) -> None:
        """Merge settings the service returned into later requests (same name replaces)."""
        settings = self.experiment.spec.algorithm.algorithm_settings
        for setting in returned.algorithm_settings:
            for mine in settings:
                if mine.name == setting.name:
                    mine.value = setting.value
                    break
            else:
                settings.add(name=setting.name, value=setting.value)


@dataclass(frozen=True)
class ServiceTarget:
    """A contender reached over gRPC: label, algorithm name sent, and address."""

    label: str
    algorithm: str
    address: str


def parse_target(text: str) -> ServiceTarget:
    """Parse ``NAME=HOST:PORT`` (algorithm name = NAME) or ``NAME=ALGORITHM@HOST:PORT``.

    >>> parse_target("mine=tpe@10.0.0.5:6789")
    ServiceTarget(label='mine', algorithm='tpe', address='10.0.0.5:6789')
    """
    label, sep, rest = text.partition("=")
    algorithm, at, address = rest.rpartition("@")
    if not (sep and label and address and ":" in address) or (at and not algorithm):
        raise ValueError(
            f"--service {text!r}: expected NAME=HOST:PORT or NAME=ALGORITHM@HOST:PORT"
        )
    return ServiceTarget(label=label, algorithm=algorithm or label, address=address)


def service_contender(
    target: ServiceTarget, channel: grpc.Channel, kind: str = "service"
) -> Contender:
    """A contender whose runs talk to ``channel`` with ``target.algorithm``."""
    stub = api_pb2_grpc.SuggestionStub(channel)

    def make(problem: Problem, run: RunSettings) -> ServiceOptimizer:
        # Named after the algorithm, not the label, so the same algorithm and seed give the
        # same experiment (and answers) in process and behind an address.
        name = f"bench-{problem.name}-{target.algorithm}-s{run.seed}"
        experiment = experiment_to_proto(
            name,
            problem.space,
            target.algorithm,
            [("random_state", str(run.seed))],
            budget=run.budget,
            batch=run.batch,
        )
        return ServiceOptimizer(stub, experiment, problem.space)

    where = "in-process katib-suggestion" if kind == "katib" else target.address
    return Contender(target.label, kind, make, f"{target.algorithm} @ {where}")


class Services:
    """Channels to the services of a benchmark: our algorithms in process, others by address.

    Use as a context manager; the in-process server starts only if ``algorithms`` is non-empty::

        with Services(["random", "sobol"], [parse_target("x=random@host:6789")]) as services:
            contenders = services.contenders
    """

    def __init__(self, algorithms: Iterable[str] = (), targets: Iterable[ServiceTarget] = ()):
        self.algorithms = list(algorithms)
        self.targets = list(targets)
        self.server: RunningServer | None = None
        self.channels: list[grpc.Channel] = []
        self.contenders: list[Contender] = []
        #: Every service target with its channel (what latency mode measures).
        self.endpoints: list[tuple[ServiceTarget, grpc.Channel]] = []

    def __enter__(self) -> Services:
        from katib.suggestion.server import services

        if self.algorithms:
            self.server = start(services(self.algorithms), host="127.0.0.1", port=0)
            channel = self._channel(self.server.address)
            for name in self.algorithms:
                target = ServiceTarget(name, name, self.server.address)
                self.contenders.append(service_contender(target, channel, kind="katib"))
                self.endpoints.append((target, channel))
        for target in self.targets:
            channel = self._channel(target.address)
            self.contenders.append(service_contender(target, channel))
            self.endpoints.append((target, channel))
        return self

    def _channel(self, address: str) -> grpc.Channel:
        channel = grpc.insecure_channel(address, options=GRPC_OPTIONS[:2])
        self.channels.append(channel)
        return channel

    def __exit__(self, *exc: object) -> None:
        for channel in self.channels:
            channel.close()
        if self.server is not None:
            self.server.stop(grace=1)
