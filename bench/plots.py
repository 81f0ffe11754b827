"""PNG figures (matplotlib, Agg backend, imported only here).

* :func:`plot_convergence` — one panel per problem: median best-so-far regret against trials with
  the inter-quartile band, log scale (regrets below ``floor`` are drawn at ``floor``);
* :func:`plot_anytime` — one panel: median best-so-far regret against resource spent, with the
  inter-quartile band (the multi-fidelity benchmark);
* :func:`plot_latency` — median suggestion latency against the history size of the call.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: Regret drawn at this value when it is smaller (log axis).
FLOOR = 1e-8


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colours(names: Sequence[str]) -> dict[str, Any]:
    plt = _pyplot()
    cmap = plt.get_cmap("tab20" if len(names) > 10 else "tab10")
    return {name: cmap(i % cmap.N) for i, name in enumerate(names)}


def _styles(names: Sequence[str], kinds: Mapping[str, str]) -> dict[str, str]:
    """Solid lines for our algorithms, dashed for services by address, dotted for peers."""
    return {n: {"katib": "-", "service": "--"}.get(kinds.get(n, ""), ":") for n in names}


def plot_convergence(
    path: Path,
    curves: Mapping[tuple[str, str], np.ndarray],
    problems: Sequence[str],
    kinds: Mapping[str, str],
    title: str = "",
) -> None:
    """Write the convergence figure: ``curves[(problem, algorithm)]`` is ``(seeds, budget)``."""
    plt = _pyplot()
    algorithms = list(dict.fromkeys(a for _, a in curves))
    colours, styles = _colours(algorithms), _styles(algorithms, kinds)
    cols = min(3, max(1, len(problems)))
    rows = math.ceil(len(problems) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.8 * rows), squeeze=False)
    for ax, problem in zip(axes.flat, problems, strict=False):
        for algorithm in algorithms:
            regret = curves.get((problem, algorithm))
            if regret is None or not np.isfinite(regret).any():
                continue
            x = np.arange(1, regret.shape[1] + 1)
            q25, med, q75 = np.nanpercentile(np.maximum(regret, FLOOR), [25, 50, 75], axis=0)
            ax.plot(x, med, styles[algorithm], color=colours[algorithm], label=algorithm, lw=1.6)
            ax.fill_between(x, q25, q75, color=colours[algorithm], alpha=0.12, lw=0)
        ax.set_yscale("log")
        ax.set_title(problem, fontsize=10)
        ax.set_xlabel("trials")
        ax.set_ylabel("regret (best so far)")
        ax.grid(True, which="major", alpha=0.3)
    for ax in list(axes.flat)[len(problems) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=9, frameon=False
    )
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) // 6), 1, 0.97 if title else 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    logger.info("wrote %s", path)


def plot_anytime(
    path: Path,
    grid: np.ndarray,
    curves: Mapping[str, np.ndarray],
    kinds: Mapping[str, str],
    xlabel: str = "resource spent",
    title: str = "",
) -> None:
    """Anytime regret: ``curves[name]`` is ``(seeds, len(grid))``, NaN before the first result."""
    plt = _pyplot()
    names = list(curves)
    colours, styles = _colours(names), _styles(names, kinds)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for name in names:
        regret = np.asarray(curves[name], dtype=float)
        seen = np.isfinite(regret).sum(axis=0) * 2 > regret.shape[0]  # most seeds have a result
        if not seen.any():
            continue
        with np.errstate(all="ignore"):
            q25, med, q75 = np.nanpercentile(
                np.maximum(regret[:, seen], FLOOR), [25, 50, 75], axis=0
            )
        x = grid[seen]
        ax.plot(x, med, styles[name], color=colours[name], label=name, lw=1.6)
        ax.fill_between(x, q25, q75, color=colours[name], alpha=0.12, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("regret of the incumbent (best so far)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    logger.info("wrote %s", path)


def plot_latency(
    path: Path,
    points: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    kinds: Mapping[str, str],
    title: str = "suggestion latency",
) -> None:
    """Latency (seconds, log) against history size: ``points[name] = (sizes, seconds)``."""
    plt = _pyplot()
    names = list(points)
    colours, styles = _colours(names), _styles(names, kinds)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in names:
        sizes, seconds = points[name]
        if len(sizes):
            ax.plot(
                sizes, seconds, styles[name], marker="o", ms=3, color=colours[name], label=name
            )
    ax.set_xscale("symlog", linthresh=10)
    ax.set_yscale("log")
    ax.set_xlabel("trials in the history")
    ax.set_ylabel("seconds per suggestion call (median)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    logger.info("wrote %s", path)


def latency_by_history(results: Sequence[Any]) -> dict[str, tuple[list[float], list[float]]]:
    """Median call latency per history size and contender, from benchmark run records."""
    samples: dict[str, dict[int, list[float]]] = {}
    for r in results:
        for t in r.trials:
            samples.setdefault(r.algorithm, {}).setdefault(t.history, []).append(t.latency_s)
    out = {}
    for name, by_size in samples.items():
        sizes = sorted(by_size)
        out[name] = ([float(s) for s in sizes], [float(np.median(by_size[s])) for s in sizes])
    return out
