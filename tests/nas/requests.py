"""Builders for NAS experiments and trials, as Katib's controller sends them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from katib.api import api_pb2 as pb
from tests.suggestion.requests import trial

#: Katib's test_enas_service operations: convolution (1 x 2 ids) and reduction (1 x 2 ids).
OPS: list[tuple[str, list[tuple[str, int, Mapping[str, object]]]]] = [
    (
        "convolution",
        [
            ("filter_size", pb.CATEGORICAL, {"list": ["3"]}),
            ("num_filter", pb.CATEGORICAL, {"list": ["8", "16"]}),
        ],
    ),
    (
        "reduction",
        [
            ("reduction_type", pb.CATEGORICAL, {"list": ["max_pooling"]}),
            ("pool_size", pb.INT, {"min": "2", "max": "3", "step": "1"}),
        ],
    ),
]


def nas_experiment(
    algorithm: str,
    ops: Sequence[tuple[str, Sequence[tuple[str, int, Mapping[str, object]]]]] = OPS,
    settings: Mapping[str, str] | None = None,
    *,
    num_layers: int = 4,
    name: str = "nas-exp",
    minimize: bool = False,
    sizes: bool = True,
) -> pb.Experiment:
    """A NAS ``api_pb2.Experiment`` (objective ``loss``, maximised unless ``minimize``)."""
    spec = pb.ExperimentSpec(
        objective=pb.ObjectiveSpec(
            type=pb.MINIMIZE if minimize else pb.MAXIMIZE, objective_metric_name="loss"
        ),
        algorithm=pb.AlgorithmSpec(
            algorithm_name=algorithm,
            algorithm_settings=[
                pb.AlgorithmSetting(name=k, value=v) for k, v in (settings or {}).items()
            ],
        ),
    )
    graph = spec.nas_config.graph_config
    graph.num_layers = num_layers
    if sizes:
        graph.input_sizes.extend([8, 8, 1])
        graph.output_sizes.append(10)
    for op_type, params in ops:
        op = spec.nas_config.operations.operation.add(operation_type=op_type)
        for pname, ptype, fs in params:
            op.parameter_specs.parameters.add(
                name=pname,
                parameter_type=ptype,  # type: ignore[arg-type]
                feasible_space=pb.FeasibleSpace(
                    min=str(fs.get("min", "")),
                    max=str(fs.get("max", "")),
                    step=str(fs.get("step", "")),
                    list=[str(v) for v in fs.get("list", [])],  # type: ignore[attr-defined]
                ),
            )
    return pb.Experiment(name=name, spec=spec)


def evaluated(
    reply: pb.GetSuggestionsReply,
    first: int,
    reward: object,
    condition: int = pb.TrialStatus.SUCCEEDED,
) -> list[pb.Trial]:
    """Trials for a reply's assignments, named ``t<first+i>``, with labels and metric values.

    ``reward`` maps an assignment dict to the metric value (or ``None`` for none).
    """
    trials = []
    for i, pa in enumerate(reply.parameter_assignments):
        values = [(a.name, a.value) for a in pa.assignments]
        value = reward(dict(values)) if callable(reward) else reward
        t = trial(f"t{first + i}", values, condition, value)
        for k, v in pa.labels.items():
            t.spec.labels[k] = v
        trials.append(t)
    return trials
