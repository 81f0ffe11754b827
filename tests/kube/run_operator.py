"""Run the operator in a process of its own, for tests that kill it (SIGKILL) mid-experiment.

    python -m tests.kube.run_operator API_URL SUGGESTION_ADDRESS DB_ADDRESS [COLLECTOR...]

Prints ``ready`` once every informer has listed; SIGTERM stops it cleanly.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

import kubernetes.client

from katib.controller.kube.api import KubeApi
from katib.controller.kube.config import OperatorConfig
from katib.controller.kube.operator import Operator


def main(argv: list[str]) -> int:
    """Run until SIGTERM."""
    logging.basicConfig(level=logging.WARNING, format="operator: %(levelname)s %(message)s")
    url, suggestion, db, *collector = argv
    configuration = kubernetes.client.Configuration()
    configuration.host = url
    api = KubeApi(kubernetes.client.ApiClient(configuration))
    config = OperatorConfig(
        suggestion_address=suggestion,
        db_address=db,
        collector_command=tuple(collector) or ("katib-metrics-collector",),
        workers=2,
        resync_seconds=5.0,
    )
    operator = Operator(api, config)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    thread = threading.Thread(target=operator.run, args=(stop,), daemon=True)
    thread.start()
    while not operator.has_synced() and thread.is_alive():
        stop.wait(0.05)
    print("ready", flush=True)
    thread.join()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
