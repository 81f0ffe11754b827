"""``katib-suggestion``: serve one or more suggestion algorithms over gRPC.

    katib-suggestion --algorithm random --algorithm grid --host 0.0.0.0 --port 6789

Health checking answers SERVING for ``""``, ``api.v1.beta1.Suggestion`` and Katib's probe name
``manager.v1beta1.Suggestion`` once the server is ready; SIGTERM stops it gracefully.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterable, Sequence

from katib.api import api_pb2_grpc
from katib.api.errors import InvalidArgument
from katib.api.server import ServiceSpec, run
from katib.suggestion import registry
from katib.suggestion.service import SuggestionServicer

HEALTH_NAMES = ("api.v1.beta1.Suggestion", "manager.v1beta1.Suggestion")


def services(algorithms: Iterable[str] | None = None) -> list[ServiceSpec]:
    """The service specs for a suggestion server hosting ``algorithms`` (None = all)."""
    return [
        ServiceSpec(
            register=api_pb2_grpc.add_SuggestionServicer_to_server,
            servicer=SuggestionServicer(algorithms),
            health_names=HEALTH_NAMES,
        )
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point."""
    parser = argparse.ArgumentParser(prog="katib-suggestion", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--algorithm",
        action="append",
        metavar="NAME",
        help=f"algorithm to serve (repeatable; default: all of {', '.join(registry.names())})",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")
    parser.add_argument("--port", type=int, default=6789, help="port; 0 picks a free one")
    parser.add_argument("--workers", type=int, default=16, help="request threads")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        specs = services(args.algorithm)
    except InvalidArgument as exc:
        parser.error(str(exc))
    return run(specs, host=args.host, port=args.port, max_workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
