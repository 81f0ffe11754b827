"""``katib-db-manager``: serve the observation log over gRPC.

The database is ``--db URL`` (see :mod:`katib.db.config`), else Katib's ``DB_NAME`` /
``KATIB_*`` environment variables, else the SQLite file ``katib-observations.db`` in the working
directory. ``--port 0`` binds a free port; the bound address is logged as
``listening on HOST:PORT``. SIGTERM or SIGINT stops the server gracefully (exit code 0).

Usage::

    katib-db-manager --db sqlite:///results/observations.db --host 127.0.0.1 --port 6789
    DB_NAME=postgres DB_PASSWORD=... katib-db-manager
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from katib.api.errors import Unavailable
from katib.api.server import ServiceSpec, add_server_arguments, configure_logging, serve
from katib.db.config import resolve_config
from katib.db.service import HEALTH_NAMES, DBManagerServicer, ReportObserver
from katib.db.store import ObservationStore, open_store
from katib.db.wire import add_db_manager

logger = logging.getLogger(__name__)

DEFAULT_PORT = 6789


def build_service(store: ObservationStore, on_report: ReportObserver | None = None) -> ServiceSpec:
    """The DBManager service over ``store``, ready for :func:`katib.api.server.start`."""
    return ServiceSpec(
        register=add_db_manager,  # undecodable requests answer INVALID_ARGUMENT
        servicer=DBManagerServicer(store, on_report),
        health_names=HEALTH_NAMES,
        probe=store.ping,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options of ``katib-db-manager``."""
    parser = argparse.ArgumentParser(
        prog="katib-db-manager", description="Katib observation-log DB manager (gRPC DBManager)."
    )
    parser.add_argument(
        "--db",
        metavar="URL",
        help="sqlite:///path, postgresql://user:pw@host:port/db or mysql://user:pw@host:port/db "
        "(default: DB_NAME and KATIB_* variables, else sqlite:///katib-observations.db)",
    )
    add_server_arguments(parser, default_port=DEFAULT_PORT)
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=60.0,
        help="seconds to keep retrying the first database connection (default 60)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``katib-db-manager``; returns the exit code."""
    args = parse_args(argv)
    configure_logging(args.log_level)
    try:
        config = resolve_config(args.db, os.environ)
    except ValueError as exc:
        logger.error("bad database configuration: %s", exc)
        return 2
    logger.info("observation log in %s", config.redacted())
    try:
        store = open_store(config, connect_timeout=args.connect_timeout)
    except Unavailable as exc:
        logger.error("%s", exc)
        return 1
    except ImportError as exc:  # the backend's driver is not installed
        logger.error("%s", exc)
        return 2
    try:
        return serve([build_service(store)], args)
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
