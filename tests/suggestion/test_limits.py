"""Bounds on the work and memory one request can cost (issue 13, items 7 and 8)."""

from __future__ import annotations

import subprocess
import sys
import time
import tracemalloc
from typing import Any

import grpc
import pytest

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.cache import ByteLRU
from katib.suggestion import registry
from katib.suggestion.lazy import experiment_fingerprint, history_from_request
from katib.suggestion.proto import MAX_PARAMETERS, experiment_from_proto, space_from_proto
from katib.suggestion.service import SuggestionServicer
from tests.suggestion.requests import MIXED, experiment, request, trial


def wide(n: int) -> list[tuple[str, int, dict[str, str]]]:
    return [(f"p{i}", pb.DOUBLE, {"min": "0", "max": "1"}) for i in range(n)]


def test_more_parameters_than_the_maximum_is_invalid_argument(suggestion_stub) -> None:
    for algorithm in ("tpe", "random"):  # tpe: beyond scipy Sobol's 21 201 dimensions too
        exp = experiment(algorithm, wide(21_202), {"random_state": "1"})
        for method, message in (
            (suggestion_stub.GetSuggestions, request(exp, [], 1)),
            (
                suggestion_stub.ValidateAlgorithmSettings,
                pb.ValidateAlgorithmSettingsRequest(experiment=exp),
            ),
        ):
            with pytest.raises(grpc.RpcError) as err:
                method(message, timeout=60)
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert f"at most {MAX_PARAMETERS}" in err.value.details()
            assert "experiment.spec.parameter_specs.parameters" in err.value.details()


def _best_of_three(n: int) -> float:
    specs = experiment("random", wide(n)).spec.parameter_specs.parameters
    times = []
    for _ in range(3):
        start = time.process_time()
        space_from_proto(specs)
        times.append(time.process_time() - start)
    return min(times)


def test_space_decoding_is_linear_in_the_parameter_count() -> None:
    """Quadrupling the parameters must not multiply the CPU time by 16 (the old quadratic
    duplicate check did); the bound of 10 leaves room for noise on a busy machine."""
    small, large = _best_of_three(MAX_PARAMETERS // 4), _best_of_three(MAX_PARAMETERS)
    assert large / small < 10, (small, large)
    specs = experiment("random", wide(MAX_PARAMETERS)).spec.parameter_specs.parameters
    space = space_from_proto(specs)
    assert space["p9999"].name == "p9999"  # by-name look-up is a dict


def test_duplicate_names_are_still_reported() -> None:
    params = [*wide(3), ("p1", pb.INT, {"min": "0", "max": "1"})]
    with pytest.raises(Exception, match="repeated: p1"):
        space_from_proto(experiment("random", params).spec.parameter_specs.parameters)


class Context:
    """A servicer context whose deadline passes after ``ok`` checks."""

    def __init__(self, ok: int) -> None:
        self.ok = ok
        self.aborted: tuple[Any, str] | None = None

    def time_remaining(self) -> float:
        self.ok -= 1
        return 5.0 if self.ok >= 0 else -0.1

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.aborted = (code, details)
        raise RuntimeError(details)


@pytest.mark.parametrize("ok", [0, 1, 2])
def test_work_stops_once_the_deadline_has_passed(ok: int, monkeypatch) -> None:
    calls = []
    cls = registry.get("tpe")
    original = cls.suggest
    monkeypatch.setattr(cls, "suggest", lambda self, h, n: calls.append(n) or original(self, h, n))
    exp = experiment("tpe", MIXED, {"random_state": "1"}, name=f"deadline-{ok}")
    trials = [trial(f"t{i}", [("lr", "0.01")], loss=1.0) for i in range(5)]
    context = Context(ok)
    with pytest.raises(RuntimeError):
        SuggestionServicer().GetSuggestions(request(exp, trials, 1), context)  # type: ignore[arg-type]
    assert context.aborted is not None
    code, details = context.aborted
    assert code is grpc.StatusCode.DEADLINE_EXCEEDED and "deadline exceeded" in details
    assert calls == ([1] if ok >= 2 else [])  # no modelling once the deadline has passed


def test_decoded_trials_are_bounded_by_bytes_honestly() -> None:
    """The cache's charge for an experiment's decoded trials is within a factor of two of
    what decoding them allocated, and many experiments never exceed the bound."""
    space = space_from_proto(experiment("random", MIXED).spec.parameter_specs.parameters)
    import numpy as np

    points = space.sample(np.random.default_rng(0), 2000)
    trials = [trial(f"t{i}", space.format(p), loss=i) for i, p in enumerate(points)]
    raw = [t.SerializeToString() for t in trials]
    exp = experiment("tpe", MIXED)
    info = experiment_from_proto(exp)
    cache = ByteLRU(max_bytes=1 << 30)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    history = history_from_request(raw, info, experiment_fingerprint(exp), cache)
    assert len(history.trials) == 2000
    allocated = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    allocated += sum(len(r) + 33 for r in raw)  # the request's bytes, which the cache keeps
    assert allocated / 2 < cache.nbytes < allocated * 2, (allocated, cache.nbytes)

    bound = 3 * cache.nbytes
    small = ByteLRU(max_bytes=bound)
    for e in range(12):
        other = experiment("tpe", MIXED, name=f"exp-{e}")
        history_from_request(raw, info, experiment_fingerprint(other), small).trials  # noqa: B018
        assert small.nbytes <= bound
    assert len(small) <= 3


def test_numerics_never_import_grpc() -> None:
    """Every algorithm module and the shared core they use load without grpc."""
    modules = [
        "katib.api.errors",
        "katib.api.settings",
        "katib.api.trials",
        "katib.api.cache",
        "katib.suggestion.space",
        "katib.suggestion.history",
        "katib.suggestion.base",
        "katib.suggestion.replay",
        "katib.suggestion.registry",
    ]
    code = (
        "import sys\n"
        f"for name in {modules!r}: __import__(name)\n"
        "from katib.suggestion import registry\n"
        "for name in registry.names(): registry.get(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'grpc' or m.startswith('grpc.'))\n"
        "print(len(registry.names()), loaded)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    count, loaded = result.stdout.strip().split(" ", 1)
    assert int(count) >= 5 and loaded == "[]", result.stdout


def test_stub_is_unaffected_by_the_lazy_request(suggestion_stub: api_pb2_grpc.SuggestionStub):
    """The service reads trials lazily; the reply is the same as for a parsed request."""
    exp = experiment("random", MIXED, {"random_state": "3"}, name="lazy")
    trials = [trial(f"t{i}", [("lr", "0.01")], loss=1.0) for i in range(3)]
    reply = suggestion_stub.GetSuggestions(request(exp, trials, 2))
    direct = SuggestionServicer().GetSuggestions(request(exp, trials, 2), Context(99))  # type: ignore[arg-type]
    assert reply == direct


def test_a_trial_that_is_not_a_trial_message_is_invalid_argument(suggestion_server) -> None:
    """The service reads trials lazily: bytes that are no Trial are reported by index."""
    from katib.suggestion.lazy import LazyGetSuggestionsRequest

    good = request(experiment("tpe", MIXED, {"random_state": "1"}), [], 1)
    lazy = LazyGetSuggestionsRequest.FromString(good.SerializeToString())
    lazy.trials.append(trial("ok", [("lr", "0.01")], loss=1.0).SerializeToString())
    lazy.trials.append(b"\x0a\xff\xff")  # a name whose length runs past the end
    with grpc.insecure_channel(suggestion_server.address) as channel:
        call = channel.unary_unary(
            "/api.v1.beta1.Suggestion/GetSuggestions",
            request_serializer=lambda raw: raw,
            response_deserializer=pb.GetSuggestionsReply.FromString,
        )
        with pytest.raises(grpc.RpcError) as err:
            call(lazy.SerializeToString(), timeout=60)
    assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT, err.value.details()
    assert "trials[1]" in err.value.details()
