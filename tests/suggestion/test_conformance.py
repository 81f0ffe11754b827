"""Conformance suite every registered suggestion algorithm must pass, over real gRPC.

New algorithms join automatically: the suite is parametrised over ``registry.names()`` (NAS
algorithms, which need a nasConfig, have their own suite in ``tests/nas``).
Algorithms whose ``check`` rejects a continuous space (grid) run on the finite space.
Algorithms that need a resource parameter (a ``resource_name`` setting: multi-fidelity) get
one, the first int parameter, with ``r_l = 81``; those that declare ``reruns_configs`` are held
to the search ending on a finite space instead of to one trial per point.
The restart test runs two separate ``katib-suggestion`` processes.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from katib.api import api_pb2 as pb
from katib.api import api_pb2_grpc
from katib.api.errors import KatibError
from katib.api.server import start
from katib.suggestion import registry
from katib.suggestion.proto import space_from_proto
from katib.suggestion.server import services
from katib.suggestion.service import SuggestionServicer
from tests.suggestion.requests import (
    FINITE,
    MIXED,
    TINY,
    Param,
    assignments,
    experiment,
    request,
    trial,
)

ALGORITHMS = registry.names(include_nas=False)
SEED = {"random_state": "7"}
#: Four points over two ints, for algorithms that need two numeric parameters (cmaes).
TINY_NUMERIC: list[Param] = [
    ("a", pb.INT, {"min": "0", "max": "1"}),
    ("b", pb.INT, {"min": "5", "max": "6"}),
]


def settings_for(algorithm: str, params: list[Param], seed: str = "7") -> dict[str, str]:
    """The seed, plus a resource parameter for algorithms that need one."""
    fields = {f.name for f in dataclasses.fields(registry.get(algorithm).settings_class)}
    out = {"random_state": seed}
    if "resource_name" in fields:
        kinds = [pb.INT, pb.DOUBLE]
        ranked = sorted(params, key=lambda p: kinds.index(p[1]) if p[1] in kinds else 2)
        out |= {"resource_name": ranked[0][0], "r_l": "81"}
    return out


def params_for(algorithm: str) -> list[Param]:
    """The mixed space when the algorithm accepts it, else the finite one."""
    try:
        SuggestionServicer().prepare(experiment(algorithm, MIXED, settings_for(algorithm, MIXED)))
    except KatibError:
        return FINITE
    return MIXED


def seeded(algorithm: str, params: list[Param], seed: str = "7", **kw: Any) -> pb.Experiment:
    """An experiment for ``algorithm`` with its settings (see :func:`settings_for`)."""
    return experiment(algorithm, params, settings_for(algorithm, params, seed), **kw)


def history(
    algorithm: str,
    stub: api_pb2_grpc.SuggestionStub,
    rounds: int = 3,
    params: list[Param] | None = None,
) -> list[pb.Trial]:
    """Trials produced by the algorithm itself, in every state, evaluated on a toy loss."""
    exp = seeded(algorithm, params or params_for(algorithm))
    space = SuggestionServicer().prepare(exp)[1].space
    trials: list[pb.Trial] = []
    conditions = [
        pb.TrialStatus.SUCCEEDED,
        pb.TrialStatus.SUCCEEDED,
        pb.TrialStatus.FAILED,
        pb.TrialStatus.RUNNING,
        pb.TrialStatus.METRICSUNAVAILABLE,
        pb.TrialStatus.EARLYSTOPPED,
    ]
    for r in range(rounds):
        reply = stub.GetSuggestions(request(exp, trials, 4))
        for a, item in zip(assignments(reply), reply.parameter_assignments, strict=True):
            i = len(trials)
            condition = conditions[i % len(conditions)]
            point = space.encode([space.parse(a)])[0]
            loss = (
                float(((point - 0.3) ** 2).sum())
                if condition in (pb.TrialStatus.SUCCEEDED, pb.TrialStatus.EARLYSTOPPED)
                else None
            )
            trials.append(trial(item.trial_name or f"t{r}-{i}", a.items(), condition, loss))
            trials[-1].spec.labels.update(item.labels)  # as our controller sends them back
    return trials


SERVER = (sys.executable, "-m", "katib.suggestion.server")


def process(
    argv_extra: tuple[str, ...] = (), server: tuple[str, ...] = SERVER
) -> tuple[subprocess.Popen[str], str]:
    """Start ``katib-suggestion`` on a free port; its address, polled with a deadline."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.Popen(
        [*server, "--host", "127.0.0.1", "--port", "0", *argv_extra],
        stderr=subprocess.PIPE,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:  # keep reading, so the server never blocks on a full pipe
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            match = re.search(r"listening on (\S+)", lines.get(timeout=1))
        except queue.Empty:
            continue
        if match:
            return proc, match.group(1)
    proc.kill()
    raise AssertionError("katib-suggestion did not report its address")


@pytest.fixture(scope="module")
def two_processes() -> Iterator[tuple[api_pb2_grpc.SuggestionStub, api_pb2_grpc.SuggestionStub]]:
    """Stubs of two separate ``katib-suggestion`` processes serving every algorithm."""
    procs = [process(), process(("--cache-mib", "64"))]
    channels = [grpc.insecure_channel(address) for _, address in procs]
    try:
        yield api_pb2_grpc.SuggestionStub(channels[0]), api_pb2_grpc.SuggestionStub(channels[1])
    finally:
        for channel in channels:
            channel.close()
        for proc, _ in procs:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def call(stub: api_pb2_grpc.SuggestionStub, req: pb.GetSuggestionsRequest) -> list[object]:
    """Everything a reply says: assignments, trial names, labels and the echoed settings."""
    reply = stub.GetSuggestions(req, timeout=120)
    return [
        [(dict(sorted((a.name, a.value) for a in pa.assignments)), pa.trial_name,
          sorted(pa.labels.items())) for pa in reply.parameter_assignments],
        [(s.name, s.value) for s in reply.algorithm.algorithm_settings],
    ]  # fmt: skip


def sequence(
    algorithm: str, stub: api_pb2_grpc.SuggestionStub, rounds: int = 5
) -> tuple[list[pb.GetSuggestionsRequest], list[list[object]]]:
    """Requests as a controller would send them (trials finishing at increasing times, the
    echoed algorithm settings fed back) and the answers ``stub`` gave."""
    params = params_for(algorithm)
    exp = seeded(algorithm, params, name=f"restart-{algorithm}", max_trials=40)
    space = SuggestionServicer().prepare(exp)[1].space
    trials: list[pb.Trial] = []
    requests, answers = [], []
    for r in range(rounds):
        for i, t in enumerate(trials):  # running trials of the last round finish now
            if t.status.condition == pb.TrialStatus.RUNNING and i % 2 == 0:
                t.status.condition = pb.TrialStatus.SUCCEEDED
                t.status.observation.metrics.add(name="loss", value=str(0.1 * i))
                t.status.completion_time = f"2026-01-01T00:{r:02d}:{i % 60:02d}Z"
        req = request(exp, trials, 3)
        reply = stub.GetSuggestions(req, timeout=120)
        requests.append(req)
        answers.append(call(stub, req))
        assert answers[-1] == call(stub, req)  # the same request twice: the same answer
        for pa in reply.parameter_assignments:
            a = {x.name: x.value for x in pa.assignments}
            point = space.encode([space.parse(a)])[0]
            t = trial(pa.trial_name or f"r{r}-{len(trials)}", a.items(), pb.TrialStatus.RUNNING)
            t.spec.labels.update(pa.labels)
            t.status.start_time = f"2026-01-01T00:{r:02d}:00Z"
            if len(trials) % 3 == 0:  # some finish at once, with a value
                t.status.condition = pb.TrialStatus.SUCCEEDED
                t.status.observation.metrics.add(
                    name="loss", value=repr(float(((point - 0.3) ** 2).sum()))
                )
                t.status.completion_time = f"2026-01-01T00:{r:02d}:30Z"
            trials.append(t)
        exp.spec.algorithm.CopyFrom(reply.algorithm)  # Katib's controller echoes the state
    return requests, answers


def assert_in_space(
    params: list[Param], suggested: list[dict[str, str]], exp: pb.Experiment | None = None
) -> None:
    """Every assignment is a canonical point of the space (``exp``'s algorithm's, if given)."""
    space = space_from_proto(experiment("random", params).spec.parameter_specs.parameters)
    if exp is not None:  # multi-fidelity algorithms widen their resource parameter
        space = SuggestionServicer().prepare(exp)[1].space
    for a in suggested:
        assert set(a) == set(space.names)
        point = space.parse(a)  # raises if a list value or an int is off
        for spec in space.params:
            value = point[spec.name]
            if spec.is_numeric_range:
                assert spec.low <= value <= spec.high, (spec.name, value)
                if spec.step is not None:
                    k = (value - spec.low) / spec.step
                    assert abs(k - round(k)) < 1e-6, (spec.name, value)
            assert spec.format(value) == a[spec.name], "values must print canonically"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
class TestConformance:
    def test_suggestions_lie_in_the_space(self, algorithm, suggestion_stub):
        params = params_for(algorithm)
        trials = history(algorithm, suggestion_stub)
        exp = seeded(algorithm, params)
        reply = suggestion_stub.GetSuggestions(request(exp, trials, 6))
        assert_in_space(params, assignments(reply), exp)

    @pytest.mark.parametrize("count", [1, 4, 9])
    def test_requested_count_is_honoured(self, algorithm, count, suggestion_stub):
        exp = seeded(algorithm, params_for(algorithm))
        assert (
            len(suggestion_stub.GetSuggestions(request(exp, [], count)).parameter_assignments)
            == count
        )

    def test_same_seed_same_suggestions(self, algorithm, suggestion_stub):
        trials = history(algorithm, suggestion_stub)
        req = request(seeded(algorithm, params_for(algorithm)), trials, 5)
        first = assignments(suggestion_stub.GetSuggestions(req))
        assert first == assignments(suggestion_stub.GetSuggestions(req))

    def test_different_seed_different_suggestions(self, algorithm, suggestion_stub):
        params = params_for(algorithm)
        trials = history(algorithm, suggestion_stub)
        one = seeded(algorithm, params, "1")
        two = seeded(algorithm, params, "2")
        a = assignments(suggestion_stub.GetSuggestions(request(one, trials, 5)))
        b = assignments(suggestion_stub.GetSuggestions(request(two, trials, 5)))
        if algorithm == "grid":  # an unseeded grid is lexicographic; seeds shuffle it
            a = assignments(suggestion_stub.GetSuggestions(request(one, [], 5)))
            b = assignments(suggestion_stub.GetSuggestions(request(two, [], 5)))
        assert a != b

    def test_no_duplicates_in_a_batch(self, algorithm, suggestion_stub):
        exp = seeded(algorithm, FINITE)
        trials = history(algorithm, suggestion_stub, rounds=2, params=FINITE)
        count = 40
        if registry.get(algorithm).reruns_configs:
            # The resource parameter (x, 4 values) is not free: 180 / 4 = 45 configurations,
            # each started once at the bottom rung; every trial so far is one of them.
            count = min(count, 45 - len(trials))
        got = assignments(suggestion_stub.GetSuggestions(request(exp, trials, count)))
        keys = [tuple(sorted(a.items())) for a in got]
        assert len(keys) == count and len(set(keys)) == count

    def test_exhausted_space_returns_fewer(self, algorithm, suggestion_stub):
        tiny = TINY
        try:
            SuggestionServicer().prepare(seeded(algorithm, TINY))
        except KatibError:
            tiny = TINY_NUMERIC
        exp = seeded(algorithm, tiny)
        if registry.get(algorithm).reruns_configs:
            assert_search_ends(exp, suggestion_stub)
            return
        got = assignments(suggestion_stub.GetSuggestions(request(exp, [], 10)))
        assert len(got) == 4 and len({tuple(sorted(a.items())) for a in got}) == 4
        done = [trial(f"t{i}", a.items(), loss=float(i)) for i, a in enumerate(got)]
        assert assignments(suggestion_stub.GetSuggestions(request(exp, done, 3))) == []

    def test_restarted_service_answers_identically(self, algorithm, suggestion_stub):
        trials = history(algorithm, suggestion_stub)
        req = request(seeded(algorithm, params_for(algorithm)), trials, 4)
        before = assignments(suggestion_stub.GetSuggestions(req))
        fresh = start(services([algorithm]), port=0)
        try:
            with grpc.insecure_channel(fresh.address) as channel:
                after = assignments(api_pb2_grpc.SuggestionStub(channel).GetSuggestions(req))
        finally:
            fresh.stop(grace=0)
        assert before == after

    def test_separate_processes_answer_identically(self, algorithm, two_processes):
        """One process answers a request sequence with its caches warm; a second, fresh
        process answers the last request cold, then the whole sequence: all identical."""
        if registry.get(algorithm).__module__.startswith("tests."):
            pytest.skip("registered by a test module; a fresh process does not have it")
        warm, fresh = two_processes
        requests, answers = sequence(algorithm, warm)
        assert len(requests) >= 4 and all(answer[0] for answer in answers)
        assert call(fresh, requests[-1]) == answers[-1], "cold process differs from warm one"
        assert [call(fresh, r) for r in requests] == answers
        assert call(warm, requests[-1]) == answers[-1]  # warm again, after everything

    def test_maximise_and_mixed_trial_states(self, algorithm, suggestion_stub):
        params = params_for(algorithm)
        trials = history(algorithm, suggestion_stub)
        trials.append(trial("foreign", [("nope", "1")], loss=0.0))  # does not fit the space
        exp = seeded(algorithm, params, maximize=True)
        assert_in_space(
            params, assignments(suggestion_stub.GetSuggestions(request(exp, trials, 3))), exp
        )

    def test_unknown_setting_is_invalid_argument(self, algorithm, suggestion_stub):
        exp = experiment(algorithm, params_for(algorithm), {"no_such_setting": "1"})
        for call in (
            lambda: suggestion_stub.ValidateAlgorithmSettings(
                pb.ValidateAlgorithmSettingsRequest(experiment=exp)
            ),
            lambda: suggestion_stub.GetSuggestions(request(exp)),
        ):
            with pytest.raises(grpc.RpcError) as err:
                call()
            assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert "no_such_setting" in err.value.details()

    def test_bad_space_is_invalid_argument(self, algorithm, suggestion_stub):
        params = [("x", pb.INT, {"min": "5", "max": "1"}), ("y", pb.CATEGORICAL, {"list": []})]
        with pytest.raises(grpc.RpcError) as err:
            suggestion_stub.ValidateAlgorithmSettings(
                pb.ValidateAlgorithmSettingsRequest(experiment=experiment(algorithm, params))
            )
        assert err.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "'x'" in err.value.details() and "'y'" in err.value.details()

    def test_valid_experiment_validates(self, algorithm, suggestion_stub):
        exp = seeded(algorithm, params_for(algorithm))
        suggestion_stub.ValidateAlgorithmSettings(
            pb.ValidateAlgorithmSettingsRequest(experiment=exp)
        )


def assert_search_ends(
    exp: pb.Experiment, stub: api_pb2_grpc.SuggestionStub, limit: int = 500
) -> None:
    """Drive a finite-space search, finishing every trial: it ends, with no repeat in a batch.

    Across batches a point may recur: two brackets can run the same configuration at the same
    resource, one as a promotion, when the space has fewer configurations than a bracket.
    """
    trials: list[pb.Trial] = []
    while len(trials) <= limit:
        seen: set[tuple[tuple[str, str], ...]] = set()
        reply = stub.GetSuggestions(request(exp, trials, 3))
        running = [t for t in trials if t.status.condition == pb.TrialStatus.RUNNING]
        for t in running:
            t.status.condition = pb.TrialStatus.SUCCEEDED
            t.status.observation.metrics.add(name="loss", value=str(len(t.name) % 7))
        if not reply.parameter_assignments and not running:
            return
        for item in reply.parameter_assignments:
            key = tuple(sorted((a.name, a.value) for a in item.assignments))
            assert key not in seen, f"{key} suggested twice"
            seen.add(key)
            t = trial(item.trial_name or f"t{len(trials)}", key, pb.TrialStatus.RUNNING)
            t.spec.labels.update(item.labels)
            trials.append(t)
    raise AssertionError(f"the search did not end within {limit} trials")
