"""Katib's ``NasConfig`` protobuf as :mod:`katib.nas.config` domain objects (NAS's wire edge)."""

from __future__ import annotations

from katib.api import api_pb2 as pb
from katib.nas.config import NasConfig, Operation, OpParameter

_OP_PARAM_TYPES = {
    pb.CATEGORICAL: "categorical",
    pb.DISCRETE: "discrete",
    pb.INT: "int",
    pb.DOUBLE: "double",
}


def nas_config_from_proto(config: pb.NasConfig) -> NasConfig:
    """``NasConfig`` as domain objects; checking is left to the NAS algorithm."""
    graph = config.graph_config
    operations = tuple(
        Operation(
            type=op.operation_type,
            parameters=tuple(
                OpParameter(
                    name=p.name,
                    type=_OP_PARAM_TYPES.get(p.parameter_type, ""),
                    choices=tuple(p.feasible_space.list),
                    low=p.feasible_space.min,
                    high=p.feasible_space.max,
                    step=p.feasible_space.step,
                )
                for p in op.parameter_specs.parameters
            ),
        )
        for op in config.operations.operation
    )
    return NasConfig(
        num_layers=graph.num_layers,
        input_sizes=tuple(graph.input_sizes),
        output_sizes=tuple(graph.output_sizes),
        operations=operations,
    )
