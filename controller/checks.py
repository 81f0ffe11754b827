"""Can this experiment run here? Backend capabilities and services, apart from admission.

:func:`~katib.controller.validation.load_experiment` answers whether Katib accepts an
experiment. :func:`runnable` answers whether this run can carry it out: whether the backend
runs its trial kind and collector (:class:`~katib.controller.backend.Capabilities`), whether
the built-in suggestion service has its algorithm (unless ``--suggestion-address`` names
another service, which then checks the name itself), and whether the built-in early-stopping
service (:mod:`katib.earlystopping`) has the ``spec.earlyStopping`` algorithm (unless
``--early-stopping-address`` names another service). Settings are checked by the services
themselves (``ValidateAlgorithmSettings``, ``ValidateEarlyStoppingSettings``). ``katib
validate`` prints both kinds of problem apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from katib.controller.backend import Capabilities
from katib.controller.spec import Experiment


@dataclass
class Report:
    """Problems (it cannot run) and warnings (it runs, differently) as ``path: message``."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def backends() -> dict[str, Capabilities]:
    """The backends ``--backend`` can name, by name."""
    from katib.controller.kube.backend import KUBERNETES_CAPABILITIES
    from katib.controller.local import LOCAL_CAPABILITIES

    return {c.name: c for c in (LOCAL_CAPABILITIES, KUBERNETES_CAPABILITIES)}


def runnable(
    spec: Experiment,
    capabilities: Capabilities,
    suggestion_address: str | None = None,
    early_stopping_address: str | None = None,
) -> Report:
    """What stands between an admitted experiment and a run on this backend."""
    report = Report(capabilities.problems(spec), capabilities.warnings(spec))
    if suggestion_address is None:
        from katib.suggestion import registry

        name = spec.algorithm.algorithm_name
        if name not in registry.names():
            report.problems.append(
                f"spec.algorithm.algorithmName: the built-in suggestion service has no "
                f"algorithm {name!r} (it has {', '.join(registry.names())}); run a service "
                "that has it and pass --suggestion-address HOST:PORT"
            )
    if spec.early_stopping is not None and early_stopping_address is None:
        from katib.earlystopping.algorithms import ALGORITHMS

        name = spec.early_stopping.algorithm_name
        if name not in ALGORITHMS:
            report.problems.append(
                f"spec.earlyStopping.algorithmName: the built-in early-stopping service has no "
                f"algorithm {name!r} (it has {', '.join(ALGORITHMS)}); run a service that has "
                "it and pass --early-stopping-address HOST:PORT"
            )
    return report
