"""Push metrics from training code: a drop-in for the Katib SDK's ``report_metrics``.

With ``metricsCollectorSpec.collector.kind: Push`` the trial reports its own metrics:

>>> from katib.controller.push import report_metrics                   # doctest: +SKIP
>>> report_metrics({"accuracy": 0.93, "loss": 0.21})

The trial name comes from ``KATIB_TRIAL_NAME`` and the DB manager's address from
``KATIB_DB_MANAGER_ADDRESS`` (both set by the controller for every trial), falling back to
Katib's in-cluster default. All metrics of one call share one UTC timestamp. The report goes
through :class:`~katib.db.client.DBClient`: a DB manager that is briefly unreachable is retried
for up to ``retry_for`` seconds, and a report whose reply was lost is resent only where that
cannot store its rows twice (our DB manager stores each report id once).

Training code that imports the real Katib SDK instead (``from kubeflow.katib import
report_metrics``) ignores ``KATIB_DB_MANAGER_ADDRESS``: it reports to
``katib-db-manager.kubeflow:6789`` unless given ``db_manager_address=`` explicitly, so in a
local run it fails to connect (and the trial ends MetricsUnavailable). Import this module, or
pass ``db_manager_address=os.environ["KATIB_DB_MANAGER_ADDRESS"]`` to the SDK's function.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from katib.db.client import DBClient

DEFAULT_DB_MANAGER_ADDRESS = "katib-db-manager.kubeflow:6789"
DEFAULT_TIMEOUT = 10
DEFAULT_RETRY_FOR = 30.0
TRIAL_NAME_ENV = "KATIB_TRIAL_NAME"
DB_ADDRESS_ENV = "KATIB_DB_MANAGER_ADDRESS"


def report_metrics(
    metrics: Mapping[str, Any],
    db_manager_address: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    retry_for: float = DEFAULT_RETRY_FOR,
) -> None:
    """Report ``metrics`` (name -> number) for the current trial to the DB manager.

    Raises ``ValueError`` if ``KATIB_TRIAL_NAME`` is unset or a value is not a number, and
    ``RuntimeError`` if the DB manager rejects the report or cannot take it within
    ``retry_for`` seconds of retries (``timeout`` bounds each attempt).
    """
    trial_name = os.environ.get(TRIAL_NAME_ENV)
    if not trial_name:
        raise ValueError(f"the environment variable {TRIAL_NAME_ENV} is not set")
    address = db_manager_address or os.environ.get(DB_ADDRESS_ENV) or DEFAULT_DB_MANAGER_ADDRESS
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    rows = []
    for name, value in metrics.items():
        if isinstance(value, bool):
            raise ValueError(f"metric {name!r}: {value!r} is not a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"metric {name!r}: {value!r} is not a number") from None
        rows.append((stamp, str(name), str(number)))
    with DBClient(address, timeout=timeout, retry_for=retry_for) as client:
        try:
            client.report(trial_name, rows)
        except Exception as exc:  # every failure of the call, whatever the client raised
            raise RuntimeError(f"could not report metrics to {address}: {exc}") from exc
