"""Checkpoint directories for multi-fidelity trials: the variables, parent linkage, hostile
names, and real runs in which a promoted trial resumes its parent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from katib.controller import checkpoints as ck
from katib.controller import reconcile as rec
from katib.controller.runner import ExperimentRunner
from katib.controller.trials import TrialCondition
from katib.controller.validation import load_experiment
from katib.suggestion.multifidelity import CONFIG_LABEL, PARENT_LABEL, RUNG_LABEL
from tests.controller.experiments import container
from tests.controller.test_early_stopping_run import curve_experiment

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def mf_labels(parent: str | None = None) -> dict[str, str]:
    """Labels of a multi-fidelity trial, promoted from ``parent`` when given."""
    labels = {CONFIG_LABEL: "b0c0", RUNG_LABEL: "0" if parent is None else "1"}
    if parent is not None:
        labels[PARENT_LABEL] = parent
    return labels


def test_a_trial_outside_a_schedule_gets_nothing(tmp_path: Path) -> None:
    assert ck.checkpoint_env(tmp_path, "exp-abc", {}) == {}
    assert not (tmp_path / ck.FOLDER).exists()


def test_a_first_rung_trial_gets_its_own_directory_only(tmp_path: Path) -> None:
    env = ck.checkpoint_env(tmp_path, "exp-b0c0-r0", mf_labels())
    own = tmp_path.resolve() / "checkpoints" / "exp-b0c0-r0"
    assert env == {ck.CHECKPOINT_DIR_ENV: str(own)}
    assert own.is_dir()


def test_a_promoted_trial_gets_its_parent(tmp_path: Path) -> None:
    ck.checkpoint_env(tmp_path, "exp-b0c0-r0", mf_labels())
    env = ck.checkpoint_env(tmp_path, "exp-b0c0-r1", mf_labels("exp-b0c0-r0"))
    root = tmp_path.resolve() / "checkpoints"
    assert env == {
        ck.CHECKPOINT_DIR_ENV: str(root / "exp-b0c0-r1"),
        ck.PARENT_NAME_ENV: "exp-b0c0-r0",
        ck.PARENT_DIR_ENV: str(root / "exp-b0c0-r0"),
    }


@pytest.mark.parametrize("parent", ["never-ran", "exp-b0c0-r1"])
def test_a_parent_without_a_directory_or_the_trial_itself_is_no_parent(
    tmp_path: Path, parent: str
) -> None:
    env = ck.checkpoint_env(tmp_path, "exp-b0c0-r1", mf_labels(parent))
    assert set(env) == {ck.CHECKPOINT_DIR_ENV}


@pytest.mark.parametrize(
    "parent", ["..", ".", "../../etc", "a/b", "/etc", "UPPER", "x" * 64, "a..b", "", "-a"]
)
def test_hostile_parent_labels_name_no_directory(tmp_path: Path, parent: str) -> None:
    (tmp_path / "etc").mkdir()  # a real directory one level up from checkpoints/..
    env = ck.checkpoint_env(tmp_path / "results", "exp-b0c0-r1", mf_labels(parent))
    assert set(env) == {ck.CHECKPOINT_DIR_ENV}


@pytest.mark.parametrize("name", ["..", ".", "../up", "a/b", "/abs", "Bad", "x" * 64])
def test_hostile_trial_names_get_no_directory(tmp_path: Path, name: str) -> None:
    assert ck.checkpoint_env(tmp_path / "results", name, mf_labels()) == {}
    assert list(tmp_path.rglob("*")) in ([], [tmp_path / "results"])


def test_symbolic_links_out_of_the_results_are_refused(tmp_path: Path) -> None:
    results, outside = tmp_path / "results", tmp_path / "outside"
    outside.mkdir()
    (results / "checkpoints").mkdir(parents=True)
    (results / "checkpoints" / "exp-b0c0-r0").symlink_to(outside)  # planted by a trial
    env = ck.checkpoint_env(results, "exp-b0c0-r1", mf_labels("exp-b0c0-r0"))
    assert set(env) == {ck.CHECKPOINT_DIR_ENV}
    assert ck.checkpoint_env(results, "exp-b0c0-r0", mf_labels()) == {}
    # the whole folder replaced by a link: nothing is created through it
    other = tmp_path / "other"
    (other / "checkpoints").mkdir(parents=True)
    (other / "checkpoints").rename(tmp_path / "elsewhere")
    (other / "checkpoints").symlink_to(tmp_path / "elsewhere")
    assert ck.checkpoint_env(other, "exp-b0c0-r0", mf_labels()) == {}
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_a_file_in_the_way_gives_no_directory(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "exp-b0c0-r0").write_text("not a directory")
    assert ck.checkpoint_env(tmp_path, "exp-b0c0-r0", mf_labels()) == {}


#: Saves the epochs it trained in its checkpoint directory and resumes from its parent's; records
#: the variables it saw and where it started in ``seen.json`` (in its working directory).
RESUMING = textwrap.dedent(
    """
    import json, os, sys
    x, epochs = float(sys.argv[1]), int(sys.argv[2])
    parent = os.environ.get("KATIB_PARENT_CHECKPOINT_DIR")
    start = 0
    if parent and os.path.exists(os.path.join(parent, "state.json")):
        with open(os.path.join(parent, "state.json")) as f:
            start = json.load(f)["epoch"]
    with open(os.path.join(os.environ["KATIB_TRIAL_CHECKPOINT_DIR"], "state.json"), "w") as f:
        json.dump({"epoch": epochs}, f)
    seen = {k: v for k, v in os.environ.items() if k.startswith("KATIB_")}
    with open("seen.json", "w") as f:
        json.dump({"env": seen, "start": start}, f)
    print(f"loss={x + 1 / epochs:.6f}")
    """
)


def test_promoted_trials_resume_their_parents_in_a_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """hyperband r_l = 3, eta = 3: 3 configs at 1 epoch, the best promoted to 3 (it resumes
    from epoch 1), then 2 new configs at 3 epochs (from scratch)."""
    monkeypatch.setenv(ck.PARENT_DIR_ENV, "/etc")  # the controller's own env is not passed on
    script = tmp_path / "resuming.py"
    script.write_text(RESUMING)
    doc = curve_experiment(
        script,
        "resume-run",
        algorithm={
            "algorithmName": "hyperband",
            "algorithmSettings": [
                {"name": "resource_name", "value": "epochs"},
                {"name": "r_l", "value": "3"},
                {"name": "random_state", "value": "1"},
            ],
        },
    )
    doc["spec"]["parameters"] = [
        {"name": "x", "parameterType": "double", "feasibleSpace": {"min": "0", "max": "1"}},
        {"name": "epochs", "parameterType": "int", "feasibleSpace": {"min": "1", "max": "3"}},
    ]
    doc["spec"]["trialTemplate"]["trialParameters"].append(
        {"name": "epochs", "reference": "epochs"}
    )
    doc["spec"].update(parallelTrialCount=3, maxTrialCount=20, maxFailedTrialCount=0)
    container(doc)["command"] = [
        sys.executable,
        str(script),
        "${trialParameters.x}",
        "${trialParameters.epochs}",
    ]
    results = tmp_path / "results"
    result = ExperimentRunner(load_experiment(doc), doc, results).run()
    assert result.decision.reason is rec.Reason.SUGGESTION_END_REACHED, result.decision.message
    assert [t.condition for t in result.trials] == [TrialCondition.SUCCEEDED] * 6
    root = results.resolve() / "checkpoints"
    promoted = 0
    for trial in result.trials:
        seen = json.loads((results / "trials" / trial.name / "seen.json").read_text())
        env, labels = seen["env"], dict(trial.labels)
        assert env[ck.CHECKPOINT_DIR_ENV] == str(root / trial.name)
        assert (root / trial.name / "state.json").is_file()
        parent = labels.get(PARENT_LABEL)
        if parent is None:
            assert ck.PARENT_DIR_ENV not in env and ck.PARENT_NAME_ENV not in env
            assert seen["start"] == 0
            continue
        promoted += 1
        assert env[ck.PARENT_NAME_ENV] == parent
        assert env[ck.PARENT_DIR_ENV] == str(root / parent)
        assert seen["start"] == int(dict(result.trials[0].assignments)["epochs"]) == 1
    assert promoted == 1


def run_mlp(*args: str, env: dict[str, str] | None = None) -> list[str]:
    """Run ``examples/train_mlp.py`` and return its output lines."""
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "train_mlp.py"), "--hidden", "8", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_the_example_trainer_resumes_to_the_same_result_as_from_scratch(tmp_path: Path) -> None:
    parent, child = tmp_path / "parent", tmp_path / "child"
    parent.mkdir()
    child.mkdir()
    scratch = run_mlp("--epochs", "3")
    run_mlp("--epochs", "1", env={ck.CHECKPOINT_DIR_ENV: str(parent)})
    resumed = run_mlp(
        "--epochs", "3", env={ck.CHECKPOINT_DIR_ENV: str(child), ck.PARENT_DIR_ENV: str(parent)}
    )
    assert resumed[0].startswith("resuming from epoch 1")
    assert resumed[1:] == scratch
    other = run_mlp("--epochs", "3", "--lr", "0.02", "--resume-from", str(parent))
    assert not other[0].startswith("resuming")  # another configuration's checkpoint is ignored
