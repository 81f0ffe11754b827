"""The controller's suggestion client keeps trial messages for a bounded number of experiments."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from katib.controller import services
from katib.controller.services import Suggestions
from katib.controller.trials import TrialCondition, TrialRecord
from katib.controller.validation import load_experiment
from tests.controller.experiments import experiment


def records(prefix: str, n: int) -> list[TrialRecord]:
    return [
        TrialRecord(f"{prefix}-{i}", i, (("x", "0.5"), ("y", "0.05")), TrialCondition.RUNNING)
        for i in range(n)
    ]


def test_trial_messages_are_reused_until_their_record_changes(tmp_path: Path) -> None:
    client = Suggestions("127.0.0.1:1")  # never dialled: only messages are built
    spec = load_experiment(experiment(tmp_path / "trial.py", name="a"))
    first = records("a", 3)
    sent = client._trials(spec, first)
    assert [m.name for m in sent] == ["a-0", "a-1", "a-2"]
    changed = [first[0], replace(first[1], condition=TrialCondition.SUCCEEDED), first[2]]
    again = client._trials(spec, changed)
    assert again[0] is sent[0] and again[2] is sent[2] and again[1] is not sent[1]
    # A trial that is gone (its Trial deleted) is no longer held.
    client._trials(spec, changed[:1])
    assert list(client._trial_cache["a"]) == ["a-0"]
    client.close()


def test_the_cache_holds_only_the_most_recent_experiments(tmp_path: Path) -> None:
    client = Suggestions("127.0.0.1:1")
    limit = services._CACHED_EXPERIMENTS
    for k in range(limit + 5):
        spec = load_experiment(experiment(tmp_path / "trial.py", name=f"e{k}"))
        client._trials(spec, records(f"e{k}", 2))
    assert len(client._trial_cache) == limit
    assert "e0" not in client._trial_cache and f"e{limit + 4}" in client._trial_cache
    client.close()
