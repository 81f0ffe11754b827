"""``katib-suggestion``: serve one or more suggestion algorithms over gRPC.

    katib-suggestion --algorithm random --algorithm grid --host 0.0.0.0 --port 6789

``--cache-mib`` bounds the memory of the per-experiment caches (decoded trials, replayed
algorithm state; 256 MiB by default). They are speed-ups only: a smaller bound, or none, can
cost time but never changes an answer.

Health checking answers SERVING for ``""``, ``api.v1.beta1.Suggestion`` and Katib's probe name
``manager.v1beta1.Suggestion`` once the server is ready; SIGTERM stops it gracefully.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence

from katib.api.errors import InvalidArgument
from katib.api.server import ServiceSpec, add_server_arguments, configure_logging, serve
from katib.suggestion import registry
from katib.suggestion.service import SuggestionServicer, add_to_server

HEALTH_NAMES = ("api.v1.beta1.Suggestion", "manager.v1beta1.Suggestion")


def services(algorithms: Iterable[str] | None = None) -> list[ServiceSpec]:
    """The service specs for a suggestion server hosting ``algorithms`` (None = all)."""
    return [
        ServiceSpec(
            register=add_to_server,
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
    add_server_arguments(parser, default_port=6789, cache=True)
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        specs = services(args.algorithm)
    except InvalidArgument as exc:
        parser.error(str(exc))
    return serve(specs, args)


if __name__ == "__main__":
    sys.exit(main())
