"""The ENAS trial program: train the child network of one suggested architecture.

Usage (flags as in Katib's ENAS trial image; both values may keep Katib's ``'`` quoting)::

    python -m katib.nas.enas.trial --architecture="[[0], [1, 1]]" \\
        --nn_config="{'num_layers': 2, ...}" --num_epochs=3 --dataset=digits

Every epoch prints ``Validation-Accuracy=<value>`` (Katib's StdOut metric format).
"""

from __future__ import annotations

import argparse
import sys

import torch

from katib.nas.config import unquote
from katib.nas.data import load
from katib.nas.enas.child import ChildNetwork
from katib.nas.train import fit


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The trial's command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--architecture", required=True, help="Katib's architecture JSON")
    parser.add_argument("--nn_config", required=True, help="Katib's nn_config JSON")
    parser.add_argument("--num_epochs", type=int, default=3)
    parser.add_argument("--dataset", default="digits", help="digits, digits-hard or cifar10:/path")
    parser.add_argument("--limit", type=int, default=None, help="CIFAR-10 training images")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Build, train and report; exit status 2 on a malformed architecture."""
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        arc = unquote(args.architecture)
        nn_config = unquote(args.nn_config)
        if not isinstance(arc, list) or not all(isinstance(r, list) and r for r in arc):
            raise ValueError("architecture must be a list of non-empty lists")
        torch.manual_seed(args.seed)
        model = ChildNetwork(arc, nn_config)
    except (ValueError, KeyError, TypeError) as exc:
        print(f"error: bad --architecture/--nn_config: {exc}", file=sys.stderr)
        return 2
    data = load(args.dataset, args.seed, args.limit)
    fit(model, data, args.num_epochs, args.lr, args.batch_size, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
