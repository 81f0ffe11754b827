"""The early-stopping benchmark on a tiny workload (figures come from the full run)."""

from __future__ import annotations

import json

import pytest

from katib.bench import cli
from katib.bench.early_stopping import PROBLEMS, RuleSpec


def test_tiny_run_writes_consistent_figures(tmp_path, capsys):
    out = tmp_path / "es"
    code = cli.main(
        ["early-stopping", "--problems", "synthetic", "--seeds", "2", "--trials", "9",
         "--parallel", "3", "--rule", "medianstop:start_step=2", "--rule", "asha",
         "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    assert "| synthetic | asha |" in capsys.readouterr().out
    runs = json.loads((out / "runs.json").read_text())
    steps = PROBLEMS["synthetic"].steps
    by = {(r["rule"], r["seed"]): r for r in runs}
    assert {rule for rule, _ in by} == {"none", "medianstop:start_step=2", "asha"}
    for seed in (0, 1):
        none = by["none", seed]
        assert none["steps"] == 9 * steps and none["stopped"] == 0
        for rule in ("medianstop:start_step=2", "asha"):
            run = by[rule, seed]
            # the same curves, cut short: never more steps, never a better best
            assert run["steps"] <= none["steps"] and run["best"] >= none["best"]
            assert (run["steps"] < none["steps"]) == (run["stopped"] > 0)
            assert run["rule_calls"] >= 9
    assert any(by["asha", seed]["stopped"] for seed in (0, 1))
    assert (out / "table.md").read_text().startswith("| problem | rule |")


def test_rule_spec_parsing():
    assert RuleSpec.parse("asha:reduction_factor=4,min_resource=2") == RuleSpec(
        "asha", (("reduction_factor", "4"), ("min_resource", "2"))
    )
    assert RuleSpec.parse("none").label == "none"
    katib = RuleSpec.parse("medianstop@katib:start_step=2")
    assert katib.semantics == "katib" and katib.label == "medianstop@katib:start_step=2"
    with pytest.raises(ValueError, match="semantics must be any or katib"):
        RuleSpec.parse("asha@all")
    with pytest.raises(ValueError, match="expected key=value"):
        RuleSpec.parse("asha:oops")


def test_bad_rule_settings_fail_the_run(capsys):
    code = cli.main(
        ["early-stopping", "--problems", "synthetic", "--seeds", "1", "--trials", "2",
         "--rule", "asha:reduction_factor=1"]
    )  # fmt: skip
    assert code == 2
    assert "--rule asha:reduction_factor=1: reduction_factor must be" in capsys.readouterr().err
