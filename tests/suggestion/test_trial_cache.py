"""The per-experiment decoded-trial cache never changes what an algorithm sees."""

from __future__ import annotations

import numpy as np

from katib.api import api_pb2 as pb
from katib.api.cache import ByteLRU
from katib.suggestion.lazy import experiment_fingerprint, history_from_request
from katib.suggestion.proto import experiment_from_proto, space_from_proto
from tests.suggestion.requests import MIXED, experiment, trial


def test_cached_histories_equal_fresh_ones_whatever_the_request_order() -> None:
    exp = experiment("tpe", MIXED)
    info = experiment_from_proto(exp)
    space = space_from_proto(exp.spec.parameter_specs.parameters)
    points = space.sample(np.random.default_rng(1), 40)
    trials = [
        trial(f"t{i:02d}", space.format(p), pb.TrialStatus.RUNNING) for i, p in enumerate(points)
    ]
    finished = pb.Trial()
    finished.CopyFrom(trials[5])
    finished.status.condition = pb.TrialStatus.SUCCEEDED
    finished.status.observation.metrics.add(name="loss", value="0.5")
    raw = [t.SerializeToString() for t in trials]
    changed = [*raw[:5], finished.SerializeToString(), *raw[6:]]
    sequence = [
        raw[:10],  # first sight
        raw[:10],  # identical
        raw[:25],  # appended
        raw[:30],  # appended again
        changed[:30],  # a trial in the middle finished
        raw[3:20],  # trials left the history
        list(reversed(raw)),  # another order
        changed,
    ]
    cache = ByteLRU()
    for request in sequence:
        cached = history_from_request(request, info, experiment_fingerprint(exp), cache)
        fresh = history_from_request(request, info)
        assert cached.names == fresh.names
        assert cached.sorted_names == fresh.sorted_names
        assert cached.trials == fresh.trials
        assert [t.key for t in cached.trials] == [t.key for t in fresh.trials]
        assert cached.taken_keys(info.space) == fresh.taken_keys(info.space)
        assert cache.nbytes <= cache.max_bytes
    assert [t.value for t in cached.completed] == [0.5]
