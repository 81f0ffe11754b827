"""``examples/kubernetes/*.yaml`` run our image's programs; random-svm runs end to end on the
fake cluster, as in the image.

The Experiment is applied unchanged except for two things the image provides: its trial
command runs ``train_digits.py`` from ``/opt/katib/examples`` (the Dockerfile copies
``examples/`` there), mapped here to this checkout's ``examples/``, and ``python3`` is this
interpreter. The trial count is cut to keep the test short. Then ``kubectl get experiments``
is evaluated on the result: each printer column's JSONPath must find a value.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

from katib.controller.kube.api import KubeApi
from katib.controller.kube.resources import EXPERIMENTS, TRIALS
from tests.kube.cluster import NAMESPACE, completed, condition, fake_cluster, operator_thread
from tests.kube.cluster import wait_for as wait

ROOT = Path(__file__).resolve().parents[2]
IMAGE_EXAMPLES = "/opt/katib/examples"


def as_in_image(experiment: dict[str, Any], trials: int) -> dict[str, Any]:
    spec = experiment["spec"]
    spec["maxTrialCount"] = trials
    spec["parallelTrialCount"] = min(spec["parallelTrialCount"], trials)
    spec["maxFailedTrialCount"] = min(spec["maxFailedTrialCount"], trials)
    pod = spec["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
    for container in pod["containers"]:
        command = container["command"]
        assert command[0] == "python3" and command[1].startswith(IMAGE_EXAMPLES + "/")
        container["command"] = [
            sys.executable,
            command[1].replace(IMAGE_EXAMPLES, str(ROOT / "examples")),
            *command[2:],
        ]
    experiment["metadata"]["namespace"] = NAMESPACE
    return experiment


def json_path(obj: Any, path: str) -> Any:
    """kubectl's JSONPath for the forms printer columns use: ``.a.b``, ``[0]``, ``[-1:]``."""
    for name, index in re.findall(r"\.(\w+)|\[(-?\d+):?\]", path):
        if name:
            obj = obj.get(name) if isinstance(obj, dict) else None
        else:
            obj = obj[int(index)] if isinstance(obj, list) and obj else None
        if obj is None:
            return None
    return obj


def test_dockerfile_puts_the_examples_where_the_experiments_run_them() -> None:
    assert f"COPY examples {IMAGE_EXAMPLES}" in (ROOT / "Dockerfile").read_text()
    for path in sorted((ROOT / "examples" / "kubernetes").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        pod = doc["spec"]["trialTemplate"]["trialSpec"]["spec"]["template"]["spec"]
        for container in pod["containers"]:
            assert container["image"] == "ghcr.io/katib-py/katib:latest", path.name
            scripts = [a for a in container["command"] if a.startswith(IMAGE_EXAMPLES + "/")]
            assert scripts, f"{path.name}: runs no program from the image"
            for script in scripts:
                assert (ROOT / "examples" / script.removeprefix(IMAGE_EXAMPLES + "/")).is_file()


def test_random_svm_runs_and_kubectl_get_shows_the_best_trial(
    services: tuple[str, str], workdir: Path
) -> None:
    suggestion, db = services
    doc = yaml.safe_load((ROOT / "examples" / "kubernetes" / "random-svm.yaml").read_text())
    name = doc["metadata"]["name"]
    with fake_cluster(workdir) as server:
        KubeApi(server.api_client()).create(EXPERIMENTS, NAMESPACE, as_in_image(doc, trials=2))
        with operator_thread(server, suggestion, db):
            exp = wait(lambda: completed(server, name), "the experiment to end", 120)
        trials = server.objects(TRIALS, NAMESPACE)
    assert exp is not None and condition(exp, "Succeeded"), exp
    assert [condition(t, "Succeeded") is not None for t in trials] == [True, True]
    crd = yaml.safe_load((ROOT / "manifests" / "base" / "crds" / "experiments.yaml").read_text())
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    row = {c["name"]: json_path(exp, c["jsonPath"]) for c in columns}
    assert row["Type"] == "Succeeded" and row["Status"] == "True"
    assert row["Best-Trial"] in {t["metadata"]["name"] for t in trials}
    assert row["Objective"] == "accuracy"  # the objective metric comes first
    assert 0.5 < float(row["Max"]) <= 1.0 and float(row["Min"]) <= float(row["Max"])
    assert row["Trials"] == 2 and row["Succeeded"] == 2
