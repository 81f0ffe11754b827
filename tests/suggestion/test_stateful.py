"""Stateful algorithms over the wire: labels, trial names and echoed state in replies."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import pytest

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.settings import format_state, parse_with_state, setting
from katib.suggestion.base import Algorithm, Suggestion, SuggestResult
from katib.suggestion.history import History
from katib.suggestion.registry import register
from tests.suggestion.requests import FINITE, experiment, request, trial


@dataclass(frozen=True)
class StagedSettings:
    random_state: int | None = setting(None, ge=0)


@dataclass(frozen=True)
class StagedState:
    stage: int = setting(0, ge=0, doc="next stage to label")
    note: str = setting("", doc="free text")


@register
class Staged(Algorithm):
    """A test algorithm that labels and names its trials and counts calls in its state."""

    name = "test-staged"
    settings_class = StagedSettings
    state_class = StagedState
    uses_objective = False

    def suggest(self, history: History, count: int) -> SuggestResult:
        stage = self.state.stage
        points = self.space.sample(self.rng(history), count)
        return SuggestResult(
            [
                Suggestion(p, {"stage": str(stage)}, name=f"staged-{stage}-{i}")
                for i, p in enumerate(points)
            ],
            StagedState(stage=stage + 1, note=f"after {len(history)}"),
        )


def test_reply_carries_names_labels_and_state(
    suggestion_stub: api_pb2_grpc.SuggestionStub,
) -> None:
    exp = experiment("test-staged", FINITE, {"random_state": "3"})
    reply = suggestion_stub.GetSuggestions(request(exp, count=2))
    assert [a.trial_name for a in reply.parameter_assignments] == ["staged-0-0", "staged-0-1"]
    assert [dict(a.labels) for a in reply.parameter_assignments] == [{"stage": "0"}] * 2
    settings = [(s.name, s.value) for s in reply.algorithm.algorithm_settings]
    assert settings == [("random_state", "3"), ("stage", "1"), ("note", "after 0")]

    # Katib's controller overlays the echoed pairs onto the experiment's settings.
    exp.spec.algorithm.CopyFrom(reply.algorithm)
    trials = [
        trial(a.trial_name, [(x.name, x.value) for x in a.assignments], pb.TrialStatus.RUNNING)
        for a in reply.parameter_assignments
    ]
    again = suggestion_stub.GetSuggestions(request(exp, trials, count=1))
    assert again.parameter_assignments[0].trial_name == "staged-1-0"
    assert dict(again.parameter_assignments[0].labels) == {"stage": "1"}
    echoed = {s.name: s.value for s in again.algorithm.algorithm_settings}
    assert echoed == {"random_state": "3", "stage": "2", "note": "after 2"}


def test_state_keys_are_typed_and_unknown_keys_still_rejected(
    suggestion_stub: api_pb2_grpc.SuggestionStub,
) -> None:
    bad = experiment("test-staged", FINITE, {"stage": "-1", "bogus": "1"})
    with pytest.raises(grpc.RpcError) as err:
        suggestion_stub.GetSuggestions(request(bad, count=1))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "algorithm state 'stage'" in err.value.details()
    assert "unknown setting 'bogus'" in err.value.details()


def test_stateless_algorithms_echo_the_request_unchanged(
    suggestion_stub: api_pb2_grpc.SuggestionStub,
) -> None:
    exp = experiment("random", FINITE, {"random_state": "5"})
    reply = suggestion_stub.GetSuggestions(request(exp, count=2))
    assert reply.algorithm == exp.spec.algorithm
    assert all(not a.trial_name and not a.labels for a in reply.parameter_assignments)


def test_state_round_trips_through_its_string_form() -> None:
    state = StagedState(stage=7, note="x y")
    _, parsed = parse_with_state(StagedSettings, StagedState, format_state(state), "t")
    assert parsed == state


def test_a_name_cannot_be_both_setting_and_state() -> None:
    @dataclass(frozen=True)
    class Clash:
        random_state: int | None = setting(None)

    with pytest.raises(TypeError, match="both a setting and a state key"):
        parse_with_state(StagedSettings, Clash, [], "t")


def test_trials_carry_timestamps(suggestion_stub: api_pb2_grpc.SuggestionStub) -> None:
    from katib.suggestion.lazy import history_from_proto
    from katib.suggestion.proto import experiment_from_proto

    exp = experiment("random", FINITE)
    t = trial("t1", [("x", "1"), ("y", "0.1"), ("c", "a"), ("d", "1")], loss=1.0)
    t.status.start_time = "2026-01-02T03:04:05Z"
    t.status.completion_time = "not a time"
    info = experiment_from_proto(exp)
    decoded = history_from_proto([t], info).trials[0]
    assert decoded.start_time is not None and decoded.start_time.isoformat() == (
        "2026-01-02T03:04:05+00:00"
    )
    assert decoded.completion_time is None
