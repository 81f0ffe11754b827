"""``enas`` and ``darts`` over real gRPC: answers in the space, counts, labels, determinism,
restarts in a fresh process, validation errors, and Katib's wire formats."""

from __future__ import annotations

import json
import subprocess
import sys

import grpc
import pytest

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.errors import FailedPrecondition
from katib.nas.config import unquote
from katib.nas.enas.algorithm import BATCH_LABEL, ENAS, INDEX_LABEL
from katib.suggestion.proto import experiment_from_proto
from tests.nas.requests import evaluated, nas_experiment
from tests.suggestion.requests import assignments, experiment, request

FAST = {"random_state": "5", "controller_train_steps": "3", "controller_hidden_size": "16"}


def check_enas_answer(values: dict[str, str], num_layers: int = 4, num_ops: int = 4) -> None:
    """An ENAS assignment: Katib's architecture rows and a matching nn_config."""
    assert set(values) == {"architecture", "nn_config"}
    assert '"' not in values["architecture"] + values["nn_config"]
    arc = unquote(values["architecture"])
    assert len(arc) == num_layers
    for i, row in enumerate(arc):
        assert len(row) == i + 1 and 0 <= row[0] < num_ops and set(row[1:]) <= {0, 1}
    config = unquote(values["nn_config"])
    assert config["num_layers"] == num_layers
    assert config["input_sizes"] == [8, 8, 1] and config["output_sizes"] == [10]
    assert {int(k) for k in config["embedding"]} == {row[0] for row in arc}
    for k, op in config["embedding"].items():
        assert op["opt_id"] == int(k) and op["opt_type"] in ("convolution", "reduction")


def test_enas_answers_in_the_space_with_count_and_labels(
    suggestion_stub: api_pb2_grpc.SuggestionStub,
) -> None:
    exp = nas_experiment("enas", settings=FAST)
    suggestion_stub.ValidateAlgorithmSettings(pb.ValidateAlgorithmSettingsRequest(experiment=exp))
    reply = suggestion_stub.GetSuggestions(request(exp, [], 3))
    assert len(reply.parameter_assignments) == 3
    for i, (pa, values) in enumerate(
        zip(reply.parameter_assignments, assignments(reply), strict=True)
    ):
        check_enas_answer(values)
        assert dict(pa.labels) == {BATCH_LABEL: "0", INDEX_LABEL: str(i)}
    second = suggestion_stub.GetSuggestions(request(exp, evaluated(reply, 0, 0.9), 2))
    assert len(second.parameter_assignments) == 2
    assert {pa.labels[BATCH_LABEL] for pa in second.parameter_assignments} == {"1"}
    for values in assignments(second):
        check_enas_answer(values)


def test_enas_is_deterministic_when_seeded_and_differs_across_seeds(
    suggestion_stub: api_pb2_grpc.SuggestionStub,
) -> None:
    exp = nas_experiment("enas", settings=FAST, num_layers=6)
    first = suggestion_stub.GetSuggestions(request(exp, [], 4))
    trials = evaluated(first, 0, lambda v: str(len(v["architecture"]) / 100))
    a = assignments(suggestion_stub.GetSuggestions(request(exp, trials, 4)))
    b = assignments(suggestion_stub.GetSuggestions(request(exp, trials, 4)))
    assert a == b
    other = nas_experiment("enas", settings={**FAST, "random_state": "6"}, num_layers=6)
    assert assignments(suggestion_stub.GetSuggestions(request(other, trials, 4))) != a


_FRESH = """
import sys
from katib.api import api_pb2 as pb
from katib.suggestion.service import SuggestionServicer
req = pb.GetSuggestionsRequest.FromString(sys.stdin.buffer.read())
sys.stdout.buffer.write(SuggestionServicer().GetSuggestions(req, None).SerializeToString())
"""


def test_enas_restarted_in_a_fresh_process_answers_identically(
    suggestion_stub: api_pb2_grpc.SuggestionStub,
) -> None:
    exp = nas_experiment("enas", settings=FAST)
    trials: list[pb.Trial] = []
    for _ in range(3):  # three evaluated batches replayed into the controller
        reply = suggestion_stub.GetSuggestions(request(exp, trials, 2))
        trials += evaluated(reply, len(trials), lambda v: 0.1 + v["architecture"].count("1") / 50)
    req = request(exp, trials, 3)
    here = suggestion_stub.GetSuggestions(req)
    out = subprocess.run(
        [sys.executable, "-c", _FRESH],
        input=req.SerializeToString(),
        capture_output=True,
        check=True,
        timeout=240,
    ).stdout
    assert pb.GetSuggestionsReply.FromString(out) == here


def test_enas_skips_pending_batches_and_ignores_failed_trials(
    suggestion_stub: api_pb2_grpc.SuggestionStub,
) -> None:
    exp = nas_experiment("enas", settings=FAST)
    reply = suggestion_stub.GetSuggestions(request(exp, [], 2))
    running = evaluated(reply, 0, None, pb.TrialStatus.RUNNING)
    failed = evaluated(reply, 0, None, pb.TrialStatus.FAILED)
    # Neither a running nor a wholly failed batch trains the controller: same answers.
    a = assignments(suggestion_stub.GetSuggestions(request(exp, running, 2)))
    b = assignments(suggestion_stub.GetSuggestions(request(exp, failed, 2)))
    assert a == b


def test_darts_answers_every_call_with_katibs_three_assignments(
    suggestion_stub: api_pb2_grpc.SuggestionStub,
) -> None:
    exp = nas_experiment("darts", settings={"num_epochs": "1", "batch_size": "None"}, sizes=False)
    suggestion_stub.ValidateAlgorithmSettings(pb.ValidateAlgorithmSettingsRequest(experiment=exp))
    first = suggestion_stub.GetSuggestions(request(exp, [], 2))
    trials = evaluated(first, 0, None)
    second = suggestion_stub.GetSuggestions(request(exp, trials, 3))  # Katib crashes here
    values = assignments(second)
    assert len(values) == 3 and values[0] == assignments(first)[0]
    settings = json.loads(values[0]["algorithm-settings"].replace("'", '"'))
    assert settings["num_epochs"] == 1 and settings["batch_size"] is None
    assert settings["w_lr"] == 0.025 and settings["stem_multiplier"] == 3
    assert unquote(values[0]["search-space"]) == [
        "convolution_3x3",
        "reduction_max_poolingxmax_pooling",
    ]
    assert values[0]["num-layers"] == "4"


@pytest.mark.parametrize(
    ("exp", "fragment"),
    [
        (
            nas_experiment("enas", settings={"controller_temperature": "0"}),
            "controller_temperature",
        ),
        (nas_experiment("enas", settings={"controller_baseline_decay": "1.5"}), "baseline_decay"),
        (nas_experiment("enas", settings={"bogus": "1"}), "unknown setting 'bogus'"),
        (nas_experiment("enas", sizes=False), "input_sizes"),
        (nas_experiment("enas", num_layers=0), "num_layers"),
        (nas_experiment("darts", settings={"num_epochs": "0"}), "num_epochs"),
        (nas_experiment("darts", settings={"batch_size": "0"}), "batch_size"),
        (
            nas_experiment("enas", ops=[("conv", [("k", pb.DOUBLE, {"min": "1", "max": "2"})])]),
            "step is required",
        ),
        (
            nas_experiment(
                "enas",
                ops=[("conv", [("k", pb.INT, {"min": "1", "max": "1000000000", "step": "1"})])],
            ),
            "more than 10000 op ids",
        ),
        (nas_experiment("random"), "needs experiment.spec.parameter_specs"),
        (experiment("enas"), "needs experiment.spec.nas_config"),
    ],
)
def test_bad_experiments_are_invalid_argument_naming_the_field(
    suggestion_stub: api_pb2_grpc.SuggestionStub, exp: pb.Experiment, fragment: str
) -> None:
    for call in (
        lambda: suggestion_stub.ValidateAlgorithmSettings(
            pb.ValidateAlgorithmSettingsRequest(experiment=exp)
        ),
        lambda: suggestion_stub.GetSuggestions(request(exp, [], 1)),
    ):
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in str(err.value.details())


def test_without_torch_enas_is_a_failed_precondition(monkeypatch: pytest.MonkeyPatch) -> None:
    info = experiment_from_proto(nas_experiment("enas"))
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(FailedPrecondition, match="need torch"):
        ENAS.check(info, None)


def test_random_and_grid_services_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from katib.suggestion.service import SuggestionServicer\n"
        "SuggestionServicer(['random', 'grid', 'enas', 'darts'])\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
