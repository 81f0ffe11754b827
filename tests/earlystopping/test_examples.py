"""The early-stopping examples: their settings validate, their trial reports a curve."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from katib.api import api_pb2 as pb

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
KATIB_FILTER = re.compile(r"([\w|-]+)\s*=\s*([+-]?\d*(\.\d+)?([Ee][+-]?\d+)?)")


@pytest.mark.parametrize("name", ["median-stop.yaml", "median-stop-json.yaml"])
def test_example_early_stopping_settings_validate(es_stub, name):
    spec = yaml.safe_load((EXAMPLES / name).read_text())["spec"]["earlyStopping"]
    request = pb.ValidateEarlyStoppingSettingsRequest()
    request.early_stopping.algorithm_name = spec["algorithmName"]
    for setting in spec["algorithmSettings"]:
        request.early_stopping.algorithm_settings.add(name=setting["name"], value=setting["value"])
    es_stub.ValidateEarlyStoppingSettings(request, timeout=10)


def test_training_script_reports_one_row_per_epoch(tmp_path):
    script = str(EXAMPLES / "train_mlp_digits.py")
    args = [sys.executable, script, "--epochs", "3", "--lr", "0.05"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, check=True).stdout
    rows = [
        dict((m[0], float(m[1])) for m in KATIB_FILTER.findall(line))
        for line in out.split("\n")
        if line
    ]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert all(r["loss"] > 0 and 0 <= r["accuracy"] <= 1 for r in rows)
    log = tmp_path / "katib" / "mnist.json"
    log.parent.mkdir()
    subprocess.run([*args, f"--log-path={log}"], timeout=120, check=True)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["epoch"] for line in lines] == ["1", "2", "3"]
    assert all(
        isinstance(line["accuracy"], str) and line["timestamp"].endswith("Z") for line in lines
    )
