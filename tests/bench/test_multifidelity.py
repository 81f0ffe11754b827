"""The multi-fidelity benchmark runs end to end on a tiny workload and prints its table."""

from __future__ import annotations

import math
import re

import pytest

from katib.bench import multifidelity
from katib.bench.cli import main


def test_every_method_prints_a_row(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["multifidelity", "--seeds", "2", "--budget", "10"]) == 0
    out = capsys.readouterr().out
    for name in ("hyperband", "bohb", "asha", "random", "tpe"):
        assert re.search(rf"^\| {name} \| [\d.e-]+ \[", out, re.M), out


def test_cost_is_counted_in_resource_units() -> None:
    curve = multifidelity.run("hyperband", seed=0, budget=3 * multifidelity.R, batch=4)
    spent = [s for s, _ in curve]
    assert spent == sorted(spent) and spent[0] == 4  # the first batch: 4 trials at 1 epoch
    assert all(math.isfinite(r) and r >= 0 for _, r in curve)
    assert multifidelity.final_loss({"x0": (math.pi + 5) / 15, "x1": 2.275 / 15, "x2": 0.7}) == (
        pytest.approx(0, abs=1e-5)
    )
