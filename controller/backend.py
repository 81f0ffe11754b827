"""The seam between the controller's loop and whatever runs trials: the :class:`Backend` protocol.

The runner (:mod:`katib.controller.runner`) decides with the pure
:func:`~katib.controller.reconcile.reconcile` and carries decisions out through a backend. It
never names a concrete backend: local processes (:class:`~katib.controller.local.LocalBackend`)
satisfy the protocol today, Kubernetes Jobs will next, and the loop does not change.

A backend's life with one experiment:

1. ``capabilities.problems(spec)`` before anything runs: what this backend cannot run (a trial
   kind, a metrics-collector kind, a template it cannot read) as ``path: message`` problems,
   separate from Katib's admission rules (:mod:`katib.controller.validation`), which every
   backend shares. ``capabilities.warnings(spec)`` lists what it will run differently.
2. ``recover(trial)`` for each trial a previous controller left Created or Running: whatever of
   it may still run (a process group, a Job) is stopped, so the trial can run again afresh.
3. ``start(trial)`` runs one Created trial and returns a JSON-able record of how to find it
   again (a pid and start tick, a Job name); the runner persists it before going on.
4. ``poll(timeout, wake)`` waits up to ``timeout`` s, or until the file descriptor ``wake`` is
   readable (the runner's signal pipe), streaming metrics meanwhile, and returns a
   :class:`Finished` for each trial that ended on its own or was early-stopped.
5. ``stop(names, hurry)`` stops running trials (SIGTERM, then SIGKILL after a grace period,
   cut short when ``hurry()`` turns true; a Job delete) and returns a :class:`Finished` for
   each, saying whether the trial was still running (``stopped``) or had already ended by
   itself, whose result then stands.
6. ``collect(finished)`` turns a finished trial into its observation: the rows the backend's
   collector folded as they streamed, or the DB's rows when the trial pushed its own.
7. ``close()`` stops whatever still runs.

Metrics collection is shared: :class:`~katib.controller.collector.TrialCollector` parses StdOut
or File output, streams rows into the DB service, folds the observation and enforces
early-stopping rules, whatever produced the bytes (a pipe here, a pod's log there).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from katib.controller.collector import Collected, Collector
from katib.controller.spec import CollectorKind, Experiment, TrialTemplate
from katib.controller.trials import MetricValue, TrialRecord

#: A backend's own look at a template: (problems, warnings), each a ``path: message`` line.
TemplateCheck = Callable[[TrialTemplate], tuple[list[str], list[str]]]


@dataclass(frozen=True)
class Finished:
    """A trial that is no longer running, as a backend reports it.

    ``stopped``: the controller stopped it while it still ran (a goal reached elsewhere, an
    interrupt); a trial that had already exited has ``stopped=False`` and keeps its result.
    ``early_stopped``: its early-stopping rules were met and the backend stopped it.
    """

    name: str
    exit_code: int
    collected: Collected
    stopped: bool = False
    early_stopped: bool = False


@dataclass(frozen=True)
class Capabilities:
    """What a backend can run, declared up front rather than discovered by failure.

    ``trial_kinds``: ``trialSpec.kind`` values it runs (empty: any kind with the primary
    container). ``unsupported_kinds``: kinds it refuses with a reason. ``collector_kinds``:
    metrics-collector kinds it runs. ``config_maps``: whether it can read a template from a
    ConfigMap. ``early_stopping``: whether it enforces early-stopping rules (with a StdOut or
    File collector). ``template_check``: what else it needs of an inline template (a command
    it can run) and what it will ignore (warnings).
    """

    name: str
    collector_kinds: frozenset[CollectorKind]
    trial_kinds: frozenset[str] = frozenset()
    unsupported_kinds: Mapping[str, str] = field(default_factory=dict)
    config_maps: bool = False
    early_stopping: bool = True
    template_check: TemplateCheck | None = None

    def problems(self, spec: Experiment) -> list[str]:
        """What this backend cannot run in ``spec``, as ``path: message`` lines."""
        problems = []
        where = "spec.metricsCollectorSpec.collector.kind"
        kind = spec.metrics_collector.kind
        if kind not in self.collector_kinds:
            runs = ", ".join(sorted(k.value for k in self.collector_kinds))
            problems.append(
                f"{where}: {kind} collectors are not supported by {self.name} runs; use {runs}"
            )
        template = spec.trial_template
        if template.config_map is not None and not self.config_maps:
            problems.append(
                f"spec.trialTemplate.configMap: {self.name} runs cannot read Kubernetes "
                "ConfigMaps; inline the template under trialTemplate.trialSpec"
            )
        trial_kind = str(template.trial_spec.get("kind", ""))
        if trial_kind in self.unsupported_kinds:
            problems.append(
                f"spec.trialTemplate.trialSpec.kind: {trial_kind} is not supported by "
                f"{self.name} runs: {self.unsupported_kinds[trial_kind]}"
            )
        elif (
            self.trial_kinds and template.config_map is None and trial_kind not in self.trial_kinds
        ):
            problems.append(
                f"spec.trialTemplate.trialSpec.kind: {trial_kind} is not supported by "
                f"{self.name} runs; supported: {', '.join(sorted(self.trial_kinds))}"
            )
        if spec.early_stopping is not None and not self.early_stopping:
            problems.append(
                f"spec.earlyStopping: {self.name} runs do not enforce early-stopping rules"
            )
        if self._checks_template(spec):
            problems += self.template_check(template)[0]  # type: ignore[misc]
        return problems

    def warnings(self, spec: Experiment) -> list[str]:
        """What this backend will run differently from a cluster (it still runs)."""
        warnings: list[str] = []
        if self._checks_template(spec):
            warnings += self.template_check(spec.trial_template)[1]  # type: ignore[misc]
        if spec.early_stopping is not None and spec.metrics_collector.kind not in (
            CollectorKind.STDOUT,
            CollectorKind.FILE,
        ):
            warnings.append(
                f"spec.earlyStopping: rules are enforced only with a StdOut or File collector, "
                f"not {spec.metrics_collector.kind} (as in Katib)"
            )
        return warnings

    def _checks_template(self, spec: Experiment) -> bool:
        template = spec.trial_template
        kind = str(template.trial_spec.get("kind", ""))
        return (
            self.template_check is not None
            and template.config_map is None
            and kind not in self.unsupported_kinds
        )


class BackendFactory(Protocol):
    """What the runner is given: a backend class (or any callable with its capabilities)."""

    capabilities: Capabilities

    def __call__(
        self,
        spec: Experiment,
        results_dir: Path,
        collector: Collector,
        env: dict[str, str] | None = None,
        experiment_dir: Path | None = None,
    ) -> Backend:
        """A backend for one experiment, streaming metrics through ``collector``."""
        ...


class Backend(Protocol):
    """Runs trials for the controller's loop; see the module docstring for the life cycle."""

    capabilities: Capabilities

    @property
    def running(self) -> list[str]:
        """Names of the trials this backend is running."""
        ...

    def recover(self, trial: TrialRecord) -> None:
        """Stop whatever a previous controller left running of ``trial`` (from its record)."""
        ...

    def start(self, trial: TrialRecord) -> dict[str, Any]:
        """Run ``trial``; returns a JSON-able record for :meth:`recover`. ``OSError``,
        ``KeyError`` or ``ValueError`` when it cannot be started (the trial then fails)."""
        ...

    def poll(self, timeout: float, wake: int | None = None) -> list[Finished]:
        """Wait up to ``timeout`` s (less if ``wake`` turns readable); the trials that ended."""
        ...

    def stop(
        self, names: Sequence[str], hurry: Callable[[], bool] | None = None
    ) -> list[Finished]:
        """Stop these trials; each comes back, ``stopped`` if it was still running. The grace
        period ends early once ``hurry()`` is true (a second Ctrl-C)."""
        ...

    def collect(self, finished: Finished) -> tuple[MetricValue, ...]:
        """The observation of a finished trial (objective ``unavailable`` if it has none)."""
        ...

    def close(self) -> None:
        """Stop every trial still running and release resources."""
        ...
