"""The NAS example experiments, and the shapes of Katib's own NAS examples, validate."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from katib.api.errors import InvalidArgument
from katib.controller.validation import load_experiment, load_file

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["enas", "darts"])
def test_our_examples_validate(name: str) -> None:
    experiment = load_file(ROOT / "examples" / f"{name}.yaml")
    assert experiment.algorithm.algorithm_name == name
    assert experiment.nas_config is not None and not experiment.parameters


def test_an_operation_without_parameters_is_one_choice_as_in_katibs_darts_gpu() -> None:
    data = yaml.safe_load((ROOT / "examples" / "darts.yaml").read_text())
    data["spec"]["nasConfig"]["operations"].append({"operationType": "skip_connection"})
    load_experiment(data)
    broken = copy.deepcopy(data)
    broken["spec"]["nasConfig"]["graphConfig"]["numLayers"] = 0
    with pytest.raises(InvalidArgument, match="numLayers"):
        load_experiment(broken)
