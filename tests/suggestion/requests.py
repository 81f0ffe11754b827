"""Builders for Katib requests used across suggestion tests."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from katib.api import api_pb2 as pb

Param = tuple[str, int, Mapping[str, object]]

#: A mixed space touching every parameter type and distribution.
MIXED: list[Param] = [
    ("lr", pb.DOUBLE, {"min": "0.0001", "max": "0.1", "distribution": pb.LOG_UNIFORM}),
    ("momentum", pb.DOUBLE, {"min": "0.5", "max": "0.9", "step": "0.05"}),
    ("dropout", pb.DOUBLE, {"min": "0", "max": "0.5", "distribution": pb.NORMAL}),
    ("layers", pb.INT, {"min": "1", "max": "8"}),
    ("units", pb.INT, {"min": "16", "max": "512", "distribution": pb.LOG_UNIFORM}),
    ("batch", pb.DISCRETE, {"list": ["16", "32", "64", "128"]}),
    ("optimizer", pb.CATEGORICAL, {"list": ["sgd", "adam", "rmsprop"]}),
]

#: A finite space (4 * 5 * 3 * 3 = 180 points) every algorithm can use, grid included.
FINITE: list[Param] = [
    ("x", pb.INT, {"min": "-3", "max": "3", "step": "2"}),
    ("y", pb.DOUBLE, {"min": "0.1", "max": "0.5", "step": "0.1"}),
    ("c", pb.CATEGORICAL, {"list": ["a", "b", "c"]}),
    ("d", pb.DISCRETE, {"list": ["1", "2.5", "10"]}),
]

#: Four points only, for exhaustion.
TINY: list[Param] = [
    ("a", pb.INT, {"min": "0", "max": "1"}),
    ("b", pb.CATEGORICAL, {"list": ["u", "v"]}),
]


def experiment(
    algorithm: str,
    params: Sequence[Param] = MIXED,
    settings: Mapping[str, str] | None = None,
    *,
    name: str = "exp",
    maximize: bool = False,
    max_trials: int = 0,
    parallel: int = 0,
) -> pb.Experiment:
    """An ``api_pb2.Experiment`` as Katib's controller would send it."""
    spec = pb.ExperimentSpec(
        objective=pb.ObjectiveSpec(
            type=pb.MAXIMIZE if maximize else pb.MINIMIZE, objective_metric_name="loss"
        ),
        algorithm=pb.AlgorithmSpec(
            algorithm_name=algorithm,
            algorithm_settings=[
                pb.AlgorithmSetting(name=k, value=v) for k, v in (settings or {}).items()
            ],
        ),
        max_trial_count=max_trials,
        parallel_trial_count=parallel,
    )
    for pname, ptype, fs in params:
        feasible = pb.FeasibleSpace(
            min=str(fs.get("min", "")),
            max=str(fs.get("max", "")),
            step=str(fs.get("step", "")),
            list=[str(v) for v in fs.get("list", [])],  # type: ignore[attr-defined]
            distribution=int(fs.get("distribution", pb.DISTRIBUTION_UNSPECIFIED)),  # type: ignore[call-overload]
        )
        spec.parameter_specs.parameters.add(
            name=pname, parameter_type=ptype, feasible_space=feasible
        )
    return pb.Experiment(name=name, spec=spec)


def trial(
    name: str,
    assignments: Iterable[tuple[str, str]],
    condition: int = pb.TrialStatus.SUCCEEDED,
    loss: float | str | None = None,
) -> pb.Trial:
    """A trial with assignments, a condition and (optionally) its objective value."""
    t = pb.Trial(name=name)
    for k, v in assignments:
        t.spec.parameter_assignments.assignments.add(name=k, value=v)
    t.status.condition = condition  # type: ignore[assignment]
    if loss is not None:
        t.status.observation.metrics.add(name="loss", value=str(loss))
    return t


def request(
    exp: pb.Experiment, trials: Sequence[pb.Trial] = (), count: int = 3
) -> pb.GetSuggestionsRequest:
    """A GetSuggestionsRequest with Katib's request arithmetic."""
    return pb.GetSuggestionsRequest(
        experiment=exp,
        trials=list(trials),
        current_request_number=count,
        total_request_number=len(trials) + count,
    )


def assignments(reply: pb.GetSuggestionsReply) -> list[dict[str, str]]:
    """The reply's assignments as dicts of strings."""
    return [{a.name: a.value for a in pa.assignments} for pa in reply.parameter_assignments]
