"""Small CPU measurements of the NAS algorithms on digits (prints figures; not a test).

``python -m katib.nas.bench enas --seeds 5``: per seed, the mean validation accuracy of
architectures sampled by an untrained controller against those sampled after ``--rounds``
REINFORCE batches on evaluated architectures (the same functions the ``enas`` service replays).

``python -m katib.nas.bench darts --seeds 5 [--order 2]``: per seed, a DARTS search on
``digits-hard`` (the seed's split), then the derived genotype and a random genotype of the same
size are each trained from scratch in the same :class:`EvalNetwork` (``--eval-cells`` cells,
``--eval-epochs`` epochs, same initial seed); prints both accuracies, a paired t-test over the
seeds and the epoch times.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time
from typing import Any

import torch

from katib.nas.config import NasConfig, Operation, OpParameter
from katib.nas.darts.algorithm import DARTSSettings
from katib.nas.darts.model import SearchNetwork, random_genotype, search_primitives
from katib.nas.darts.network import EvalNetwork
from katib.nas.darts.search import search
from katib.nas.data import ImageData, digits, load
from katib.nas.enas.child import ChildNetwork
from katib.nas.enas.controller import Controller, ControllerConfig, ReinforceConfig, reinforce_step
from katib.nas.train import accuracy, fit

#: A 4-layer space where choices matter: strong/weak convolutions and aggressive pooling.
ENAS_SPACE = NasConfig(
    num_layers=4,
    input_sizes=(8, 8, 1),
    output_sizes=(10,),
    operations=(
        Operation(
            "convolution",
            (
                OpParameter("filter_size", "categorical", ("3",)),
                OpParameter("num_filter", "categorical", ("4", "32")),
            ),
        ),
        Operation(
            "reduction",
            (
                OpParameter("reduction_type", "categorical", ("max_pooling", "avg_pooling")),
                OpParameter("pool_size", "categorical", ("2", "3")),
            ),
        ),
    ),
)
_CHILD_TIMES: list[float] = []


def evaluate(arc: list[list[int]], data: ImageData, epochs: int, seed: int) -> float:
    """Train a child network briefly; its final validation accuracy."""
    choices = ENAS_SPACE.op_choices()
    config = {
        "input_sizes": list(ENAS_SPACE.input_sizes),
        "output_sizes": list(ENAS_SPACE.output_sizes),
        "embedding": {row[0]: choices[row[0]].as_dict() for row in arc},
    }
    torch.manual_seed(seed)
    model = ChildNetwork(arc, config)
    start = time.perf_counter()
    _quiet_fit(model, data, epochs, seed)
    _CHILD_TIMES.append((time.perf_counter() - start) / epochs)
    return accuracy(model, data.x_valid, data.y_valid)


def _quiet_fit(model: Any, data: ImageData, epochs: int, seed: int) -> None:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        fit(model, data, epochs, seed=seed)


def enas(seeds: int, rounds: int, batch: int, epochs: int) -> None:
    """Untrained vs trained controller, per seed."""
    data = digits(0)
    rows = []
    for seed in range(seeds):
        g = torch.Generator().manual_seed(1000 + seed)
        ctrl = Controller(
            ControllerConfig(4, len(ENAS_SPACE.op_choices()), hidden_size=32),
            torch.Generator().manual_seed(seed),
        )
        with torch.no_grad():
            sampled = [ctrl(generator=g).arc for _ in range(batch)]
        before = [evaluate(a, data, epochs, seed) for a in sampled]
        opt = torch.optim.Adam(ctrl.parameters(), lr=5e-3)
        config = ReinforceConfig(learning_rate=5e-3, train_steps=10)
        baseline = None
        for _ in range(rounds):
            with torch.no_grad():
                arcs = [ctrl(generator=g).arc for _ in range(batch)]
            rewards = [evaluate(a, data, epochs, seed) for a in arcs]
            baseline = reinforce_step(ctrl, opt, arcs, rewards, baseline, config)
        with torch.no_grad():
            sampled = [ctrl(generator=g).arc for _ in range(batch)]
        after = [evaluate(a, data, epochs, seed) for a in sampled]
        rows.append((seed, statistics.mean(before), statistics.mean(after)))
        print(f"seed {seed}: untrained {rows[-1][1]:.3f}  trained {rows[-1][2]:.3f}", flush=True)
    gains = [r[2] - r[1] for r in rows]
    print(
        f"mean untrained {statistics.mean(r[1] for r in rows):.3f}, "
        f"trained {statistics.mean(r[2] for r in rows):.3f}, gain {statistics.mean(gains):+.3f} "
        f"(better in {sum(g > 0 for g in gains)}/{len(gains)} seeds); "
        f"child epoch {statistics.median(_CHILD_TIMES):.2f}s (median)"
    )


def darts(
    seeds: int, epochs: int, eval_epochs: int, eval_cells: int, order: int, dataset: str
) -> None:
    """Derived vs random genotype, each trained from scratch in the same evaluation network."""
    prims = [
        "separable_convolution_3x3",
        "dilated_convolution_3x3",
        "max_pooling_3x3",
        "avg_pooling_3x3",
        "skip_connection",
    ]
    s = DARTSSettings(
        num_epochs=epochs,
        batch_size=64,
        w_lr=0.05,
        alpha_lr=0.003,
        init_channels=8,
        num_nodes=2,
        stem_multiplier=2,
        print_step=10_000,
    )
    print(
        f"DARTS order {order} on {dataset}: search 3 cells x {epochs} epochs; evaluation network "
        f"{eval_cells} cells x {eval_epochs} epochs; primitives {prims} + none",
        flush=True,
    )
    rows: list[tuple[float, float]] = []
    search_times: list[float] = []
    eval_times: list[float] = []
    for seed in range(seeds):
        data = load(dataset, seed)
        torch.manual_seed(seed)
        net = SearchNetwork(search_primitives(prims), data.x_train.shape[1], 10, 3, 8, 2, 2)
        start = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            search(net, data, s, order=order, seed=seed, print_fn=lambda _: None)
        search_times.append((time.perf_counter() - start) / epochs)
        # The final alpha's genotype: chosen on the training split only, never on x_valid.
        derived = net.genotype()
        scores = {}
        for label, g in (
            ("derived", derived),
            ("random", random_genotype(prims, 2, torch.Generator().manual_seed(seed))),
        ):
            torch.manual_seed(seed)
            model = EvalNetwork(g, data.x_train.shape[1], 10, eval_cells, 8, 2)
            start = time.perf_counter()
            _quiet_fit(model, data, eval_epochs, seed)
            eval_times.append((time.perf_counter() - start) / eval_epochs)
            scores[label] = accuracy(model, data.x_valid, data.y_valid)
        rows.append((scores["derived"], scores["random"]))
        print(
            f"seed {seed}: derived {scores['derived']:.3f}, random {scores['random']:.3f}; "
            f"search epoch {search_times[-1]:.1f}s; {derived}",
            flush=True,
        )
    derived_acc, random_acc = [r[0] for r in rows], [r[1] for r in rows]
    diffs = [d - r for d, r in rows]
    line = (
        f"derived {statistics.mean(derived_acc):.3f} ± {_sd(derived_acc):.3f}, "
        f"random {statistics.mean(random_acc):.3f} ± {_sd(random_acc):.3f}, "
        f"difference {statistics.mean(diffs):+.3f} (derived better in "
        f"{sum(d > 0 for d in diffs)}/{len(diffs)} seeds)"
    )
    if len(rows) >= 2 and _sd(diffs) > 0:
        from scipy.stats import ttest_rel

        test = ttest_rel(derived_acc, random_acc)
        line += f"; paired t-test t={float(test.statistic):.2f}, p={float(test.pvalue):.3f}"
    print(line)
    print(
        f"search epoch {statistics.median(search_times):.1f}s, evaluation-network epoch "
        f"{statistics.median(eval_times):.2f}s (medians, one thread)"
    )


def _sd(xs: list[float]) -> float:
    return statistics.stdev(xs) if len(xs) >= 2 else 0.0


def main() -> None:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("which", choices=("enas", "darts"))
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--eval-epochs", type=int, default=10, help="DARTS evaluation training")
    p.add_argument("--eval-cells", type=int, default=5, help="DARTS evaluation network depth")
    p.add_argument("--order", type=int, choices=(1, 2), default=1, help="DARTS search order")
    p.add_argument("--dataset", default="digits-hard", help="DARTS data (see katib.nas.data)")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.which == "enas":
        enas(args.seeds, args.rounds, args.batch, args.epochs)
    else:
        darts(args.seeds, args.epochs, args.eval_epochs, args.eval_cells, args.order, args.dataset)


if __name__ == "__main__":
    main()
