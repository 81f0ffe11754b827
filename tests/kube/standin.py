"""A stand-in for the operator, so ``katib-controller`` can be tested on its own.

It lists Experiments (so it talks to the cluster), records in a ConfigMap ``standin-<identity>``
that it started and, when asked to stop, that it stopped.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence

from katib.controller.kube.api import KubeApi
from katib.controller.kube.main import main as controller_main
from katib.controller.kube.resources import CONFIGMAPS, EXPERIMENTS


class StandInOperator:
    """``run(stop)`` and ``has_synced()`` like the real operator."""

    def __init__(self, api: KubeApi, args: argparse.Namespace) -> None:
        self.api = api
        self.name = f"standin-{args.identity or 'anonymous'}"
        self.namespace = args.lease_namespace or "default"
        self.synced = threading.Event()

    def run(self, stop: threading.Event) -> None:
        self.api.list(EXPERIMENTS)
        body = {
            "metadata": {"name": self.name, "namespace": self.namespace},
            "data": {"state": "running"},
        }
        self.api.create(CONFIGMAPS, self.namespace, body)
        self.synced.set()
        stop.wait()
        self.api.patch(CONFIGMAPS, self.namespace, self.name, {"data": {"state": "stopped"}})

    def has_synced(self) -> bool:
        return self.synced.is_set()


def main(argv: Sequence[str] | None = None) -> int:
    """``katib-controller`` with the stand-in operator."""
    return controller_main(argv, operator_factory=StandInOperator)


if __name__ == "__main__":
    sys.exit(main())
