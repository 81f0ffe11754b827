"""The operator's settings: where the services are, how many workers, how often to resync.

``katib-controller`` (:mod:`katib.controller.kube.main`) builds an :class:`OperatorConfig` from
its flags; tests build one pointing at services on loopback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OperatorConfig:
    """Settings of one :class:`~katib.controller.kube.operator.Operator`.

    ``namespace``: watch one namespace (``None``: all). ``algorithm_addresses`` sends an
    algorithm to its own suggestion service instead of ``suggestion_address``.
    ``collector_command`` is prepended to each trial's primary container (the in-pod
    ``katib-metrics-collector``). ``workers`` reconcile in parallel (never two on one object);
    every object is reconciled again every ``resync_seconds`` even without a change.
    """

    namespace: str | None = None
    suggestion_address: str = "katib-suggestion.katib-system:6789"
    algorithm_addresses: Mapping[str, str] = field(default_factory=dict)
    earlystopping_address: str = "katib-earlystopping.katib-system:6788"
    db_address: str = "katib-db-manager.katib-system:6789"
    collector_command: tuple[str, ...] = ("katib-metrics-collector",)
    workers: int = 4
    resync_seconds: float = 300.0
    #: How long a trial whose run succeeded waits for its objective to reach the DB before it
    #: is MetricsUnavailable. The in-pod collector reports before the pod ends, so the rows
    #: are normally there already (Katib requeues every 1 s until its sidecar reports).
    metrics_grace_seconds: float = 3.0

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers: must be at least 1, got {self.workers}")
        if self.resync_seconds <= 0:
            raise ValueError(f"resync_seconds: must be positive, got {self.resync_seconds}")
        if not self.collector_command:
            raise ValueError("collector_command: must name a command")

    def suggestion_for(self, algorithm: str) -> str:
        """The suggestion service that runs ``algorithm``."""
        return self.algorithm_addresses.get(algorithm, self.suggestion_address)
