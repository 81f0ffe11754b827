"""``katib-earlystopping``: serve Katib's ``EarlyStopping`` API over gRPC.

    katib-earlystopping --host 0.0.0.0 --port 6788 --db-address katib-db-manager:6789

One process serves every algorithm (``medianstop``, ``asha``, ``none``); the request's
``spec.earlyStopping.algorithmName`` picks one. Rules are computed from the observation logs of
the DB service named in each request (``db_manager_address``), or ``--db-address`` when a request
names none. Health checking answers SERVING for ``""``, ``api.v1.beta1.EarlyStopping`` and
``manager.v1beta1.EarlyStopping`` once the server is ready; SIGTERM stops it gracefully.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from katib.api import api_pb2_grpc
from katib.api.errors import InvalidArgument
from katib.api.server import ServiceSpec, run
from katib.earlystopping.algorithms import ALGORITHMS
from katib.earlystopping.history import check_address
from katib.earlystopping.service import EarlyStoppingServicer

HEALTH_NAMES = ("api.v1.beta1.EarlyStopping", "manager.v1beta1.EarlyStopping")
#: Katib's early-stopping port (the suggestion pod's second container).
DEFAULT_PORT = 6788


def services(db_address: str = "") -> list[ServiceSpec]:
    """The service specs for an early-stopping server."""
    return [
        ServiceSpec(
            register=api_pb2_grpc.add_EarlyStoppingServicer_to_server,
            servicer=EarlyStoppingServicer(db_address),
            health_names=HEALTH_NAMES,
        )
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    parser = argparse.ArgumentParser(
        prog="katib-earlystopping",
        description=__doc__.split("\n")[0],
        epilog="algorithms: " + ", ".join(ALGORITHMS),
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="port (default 6788); 0 picks a free one"
    )
    parser.add_argument(
        "--db-address",
        default="",
        metavar="HOST:PORT",
        help="DB manager used when a request has no db_manager_address",
    )
    parser.add_argument("--workers", type=int, default=16, help="request threads")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.db_address:
        try:
            check_address(args.db_address)
        except InvalidArgument as exc:
            parser.error(f"--db-address: {exc}")
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return run(services(args.db_address), host=args.host, port=args.port, max_workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
