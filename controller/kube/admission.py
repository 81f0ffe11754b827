"""Admission with cluster access: a ConfigMap trial template read and admitted as if inline.

``spec.trialTemplate.configMap`` names a ConfigMap and the key holding the trial template.
Katib's webhook reads it and checks the template like an inline ``trialSpec``; here
:func:`load_with_template` does that for the operator (every pass of
:class:`~katib.controller.kube.reconciler.Reconciler`) and for ``katib submit``, whose dry-run
render (:func:`~katib.controller.kube.submit.cluster_problems`) then covers ConfigMap templates
as well as inline ones.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import yaml

from katib.api.errors import InvalidArgument
from katib.controller.kube.api import KubeApi
from katib.controller.kube.resources import CONFIGMAPS
from katib.controller.spec import Experiment
from katib.controller.validation import load_experiment


def load_with_template(api: KubeApi, experiment: Mapping[str, Any]) -> Experiment:
    """The admitted experiment, with its ConfigMap template (if any) read through ``api`` and
    inlined; ``InvalidArgument`` lists the problems, naming ``spec.trialTemplate.configMap``
    when the template cannot be read. The algorithm name is left to the suggestion service."""
    spec = load_experiment(experiment, check_algorithm=False)
    source = spec.trial_template.config_map
    if source is None:
        return spec
    at = "spec.trialTemplate.configMap"
    namespace, name = source["configMapNamespace"], source["configMapName"]
    config_map = api.get(CONFIGMAPS, namespace, name)
    if config_map is None:
        raise InvalidArgument(f"{at}: ConfigMap {namespace}/{name} does not exist")
    text = (config_map.get("data") or {}).get(source["templatePath"])
    if not isinstance(text, str):
        raise InvalidArgument(
            f"{at}.templatePath: ConfigMap {namespace}/{name} has no key "
            f"{source['templatePath']!r}"
        )
    try:
        trial_spec = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{at}: the template is not YAML: {exc}") from None
    inlined = copy.deepcopy(dict(experiment))
    template = inlined["spec"]["trialTemplate"]
    del template["configMap"]
    template["trialSpec"] = trial_spec
    return load_experiment(inlined, check_algorithm=False)
