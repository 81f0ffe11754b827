"""Metrics parsing (StdOut/File TEXT and JSON) and template substitution, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from katib.controller import template
from katib.controller.metrics import BadLine, JsonParser, MetricStream, TextParser, parse_rfc3339
from katib.controller.spec import TrialParameter, TrialTemplate
from katib.controller.trials import LogEntry


def test_default_filter_finds_all_pairs_on_a_line() -> None:
    parser = TextParser(["loss", "accuracy"])
    assert parser.parse_line("epoch 3: loss=0.25, accuracy = 9.5e-1 lr=3") == [
        LogEntry(None, "loss", "0.25"),
        LogEntry(None, "accuracy", "9.5e-1"),
    ]
    assert parser.parse_line("nothing to see") == []
    assert parser.parse_line("val-loss=0.3") == []  # name must equal a wanted metric


def test_leading_rfc3339_timestamp_stamps_the_line() -> None:
    parser = TextParser(["loss"])
    (entry,) = parser.parse_line("2024-05-01T10:00:00.123456789+02:00 loss=1.5")
    assert entry.time == datetime(2024, 5, 1, 8, 0, 0, 123456, tzinfo=UTC)
    (untimed,) = parser.parse_line("not-a-time loss=1.5")
    assert untimed.time is None


def test_custom_filter() -> None:
    parser = TextParser(["valid_1 auc"], [r"(\w+\s\w+)\s:\s((-?\d+)(\.\d+)?)"])
    assert parser.parse_line("[10] valid_1 auc : 0.75") == [LogEntry(None, "valid_1 auc", "0.75")]


def test_json_accepts_numbers_and_strings_and_epoch_fractions() -> None:
    parser = JsonParser(["loss", "accuracy"])
    (loss, acc) = parser.parse_line('{"loss": 0.5, "accuracy": "0.9", "timestamp": 1.5}')
    assert (loss.value, acc.value) == ("0.5", "0.9")
    assert loss.time == datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=UTC)
    assert parser.parse_line('{"loss": true}') == []
    with pytest.raises(BadLine, match="not JSON"):
        parser.parse_line("{broken")
    (stamped,) = parser.parse_line('{"loss": 1, "timestamp": "2024-01-01T00:00:00Z"}')
    assert stamped.time == datetime(2024, 1, 1, tzinfo=UTC)


def test_stream_handles_split_chunks_and_missing_final_newline() -> None:
    stream = MetricStream(TextParser(["loss"]))
    stream.feed(b"lo")
    stream.feed(b"ss=1\nlos")
    assert [e.value for e in stream.take()] == ["1"]
    stream.feed(b"s=2")
    stream.close()
    assert [e.value for e in stream.take()] == ["2"]
    assert stream.seen == {"loss"}


def test_rfc3339() -> None:
    assert parse_rfc3339("2024-01-01T00:00:00Z") == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_rfc3339("2024-01-01 00:00:00") is None


def _template(command: list[str], params: list[TrialParameter]) -> TrialTemplate:
    return TrialTemplate(
        trial_spec={
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"labels": {"team": "ml"}},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "main",
                                "command": command,
                                "env": [{"name": "MODE", "value": "m-${trialParameters.lr}"}],
                            }
                        ]
                    }
                }
            },
        },
        trial_parameters=tuple(params),
        primary_container_name="main",
        success_condition="s",
        failure_condition="f",
    )


def test_substitution_is_literal_and_structural() -> None:
    tmpl = _template(
        [
            "sh",
            "-c",
            "echo ${trialParameters.lr} $(HOME) $$(X) in ${trialParameters.name}",
            "--team=${trialParameters.team}",
        ],
        [
            TrialParameter("lr", "lr"),
            TrialParameter("name", "${trialSpec.Name}"),
            TrialParameter("team", "${trialSpec.Labels[team]}"),
        ],
    )
    evil = "1; rm -rf / $(HOME) `id` \"'"
    values = template.parameter_values(tmpl, {"lr": evil}, "trial-1", "ns")
    argv, env = template.render_command(
        template.container_command(tmpl), values, {"HOME": "/home/u"}
    )
    # $(HOME) is not defined for the container, so it stays as written (as in Kubernetes)
    assert argv == ["sh", "-c", f"echo {evil} $(HOME) $(X) in trial-1", "--team=ml"]
    assert env["MODE"] == f"m-{evil}"
    assert env["HOME"] == "/home/u"  # the process still inherits it


def test_k8s_vars_expand_only_container_and_controller_variables() -> None:
    tmpl = _template(
        ["run", "$(MODE)", "$(LATER)", "$(KATIB_TRIAL_NAME)", "$(PATH)", "$(SECRET)"],
        [TrialParameter("lr", "lr")],
    )
    container = tmpl.trial_spec["spec"]["template"]["spec"]["containers"][0]
    container["command"].append("${trialParameters.lr}")
    container["env"] = [
        {"name": "EARLY", "value": "$(LATER)-$(KATIB_TRIAL_NAME)-$(SECRET)"},
        {"name": "LATER", "value": "late"},
        {"name": "MODE", "value": "m-$(LATER)"},
    ]
    host = {"PATH": "/usr/bin", "SECRET": "s3cret", "KATIB_TRIAL_NAME": "t1"}
    values = template.parameter_values(tmpl, {"lr": "0.1"}, "t1", "ns")
    argv, env = template.render_command(template.container_command(tmpl), values, host)
    assert argv == ["run", "m-late", "late", "t1", "$(PATH)", "$(SECRET)", "0.1"]
    assert env["EARLY"] == "$(LATER)-t1-$(SECRET)"  # only variables defined before it


def test_conditions_defaults_by_kind() -> None:
    assert template.default_conditions("TFJob")[0].endswith(
        '#(type=="Succeeded")#|#(status=="True")#'
    )  # type: ignore[index]
    assert template.default_conditions("Pod") is None
    assert template.default_primary_pod_labels("PyTorchJob") == {
        "training.kubeflow.org/job-role": "master"
    }
