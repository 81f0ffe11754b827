"""Train a small neural network on scikit-learn's digits for a given number of epochs, resuming
from the trial it was promoted from when that trial left a checkpoint.

The multi-fidelity examples (hyperband, asha, bohb) set ``--epochs``: a trial's resource. The
script prints Katib StdOut metrics once training ends::

    accuracy=0.9611
    loss=0.1423

``accuracy`` is the held-out accuracy (a fixed 30 % split) and ``loss`` the held-out log-loss.
The network has one ReLU hidden layer and a softmax output, trained by mini-batch SGD with
momentum 0.9 (batch 64) and an L2 penalty ``alpha``; the data order of epoch ``e`` depends only
on ``--seed`` and ``e``, so training is deterministic.

Checkpoints (``katib run`` sets the variables for multi-fidelity trials, see
``controller/checkpoints.py``): after every epoch the weights, momenta and epoch count are saved
to ``$KATIB_TRIAL_CHECKPOINT_DIR/mlp.npz``. A promoted trial whose parent saved one
(``$KATIB_PARENT_CHECKPOINT_DIR/mlp.npz``, same ``--lr``, ``--alpha``, ``--hidden`` and
``--seed``, fewer epochs) starts from it and trains only the remaining epochs, with the same
result as training from scratch. ``--checkpoint-dir``/``--resume-from`` set the folders
by hand.

    python examples/train_mlp.py --lr 0.05 --alpha 1e-4 --hidden 32 --epochs 9
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

CHECKPOINT = "mlp.npz"
MOMENTUM = 0.9
BATCH = 64


class State(NamedTuple):
    """Weights ``w1`` ``(64, h)``, ``b1`` ``(h,)``, ``w2`` ``(h, 10)``, ``b2`` ``(10,)``, their
    momenta in the same order, and the epochs trained."""

    params: tuple[np.ndarray, ...]
    velocity: tuple[np.ndarray, ...]
    epoch: int


def initial_state(inputs: int, hidden: int, classes: int, seed: int) -> State:
    """Glorot-uniform weights, zero biases and momenta."""
    rng = np.random.default_rng(seed)
    bound1 = np.sqrt(6 / (inputs + hidden))
    bound2 = np.sqrt(6 / (hidden + classes))
    params = (
        rng.uniform(-bound1, bound1, (inputs, hidden)),
        np.zeros(hidden),
        rng.uniform(-bound2, bound2, (hidden, classes)),
        np.zeros(classes),
    )
    return State(params, tuple(np.zeros_like(p) for p in params), 0)


def forward(params: tuple[np.ndarray, ...], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hidden activations ``(n, h)`` and class probabilities ``(n, 10)``."""
    w1, b1, w2, b2 = params
    hidden = np.maximum(x @ w1 + b1, 0.0)
    logits = hidden @ w2 + b2
    logits -= logits.max(axis=1, keepdims=True)
    proba = np.exp(logits)
    return hidden, proba / proba.sum(axis=1, keepdims=True)


def train_epoch(
    state: State, x: np.ndarray, y: np.ndarray, lr: float, alpha: float, seed: int
) -> State:
    """One pass of SGD with momentum over ``x`` in the order fixed by ``seed`` and the epoch."""
    params, velocity = list(state.params), list(state.velocity)
    order = np.random.default_rng([seed, state.epoch + 1]).permutation(len(x))
    onehot = np.eye(params[3].shape[0])[y]
    for start in range(0, len(x), BATCH):
        rows = order[start : start + BATCH]
        xb, tb = x[rows], onehot[rows]
        hidden, proba = forward(tuple(params), xb)
        delta = (proba - tb) / len(rows)
        back = (delta @ params[2].T) * (hidden > 0)
        grads = (
            xb.T @ back + alpha * params[0] / len(rows),
            back.sum(axis=0),
            hidden.T @ delta + alpha * params[2] / len(rows),
            delta.sum(axis=0),
        )
        for i, grad in enumerate(grads):
            velocity[i] = MOMENTUM * velocity[i] - lr * grad
            params[i] = params[i] + velocity[i]
    return State(tuple(params), tuple(velocity), state.epoch + 1)


def save(state: State, folder: Path, config: np.ndarray) -> None:
    """Write ``state`` to ``folder/mlp.npz`` atomically (a reader never sees half a file)."""
    tmp = folder / f".{CHECKPOINT}.{os.getpid()}.npz"
    arrays = {f"p{i}": p for i, p in enumerate(state.params)}
    arrays |= {f"v{i}": v for i, v in enumerate(state.velocity)}
    np.savez(tmp, epoch=np.array(state.epoch), config=config, **arrays)
    os.replace(tmp, folder / CHECKPOINT)


def load(folder: Path, config: np.ndarray, epochs: int, like: State) -> State | None:
    """The checkpoint in ``folder`` if it is this configuration's, within ``epochs``, and the
    network's shapes; ``None`` (train from scratch) otherwise."""
    path = folder / CHECKPOINT
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            state = State(
                tuple(data[f"p{i}"] for i in range(4)),
                tuple(data[f"v{i}"] for i in range(4)),
                int(data["epoch"]),
            )
            same = np.array_equal(data["config"], config)
    except (OSError, ValueError, KeyError) as exc:
        print(f"ignoring checkpoint {path}: {exc}", file=sys.stderr)
        return None
    shapes = [p.shape for p in like.params] * 2
    if not same or not 0 < state.epoch <= epochs:
        return None
    if [a.shape for a in (*state.params, *state.velocity)] != shapes:
        return None
    return state


def main() -> None:
    """Parse hyperparameters, resume if a parent checkpoint fits, train, print metrics."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lr", type=float, default=0.01, help="learning rate")
    parser.add_argument("--alpha", type=float, default=1e-4, help="L2 penalty")
    parser.add_argument("--hidden", type=int, default=32, help="hidden units")
    parser.add_argument("--epochs", type=float, default=1, help="passes over the data")
    parser.add_argument("--seed", type=int, default=0, help="initial weights and data order")
    env_dir = os.environ.get("KATIB_TRIAL_CHECKPOINT_DIR")
    parent_dir = os.environ.get("KATIB_PARENT_CHECKPOINT_DIR")
    parser.add_argument("--checkpoint-dir", type=Path, default=env_dir and Path(env_dir))
    parser.add_argument("--resume-from", type=Path, default=parent_dir and Path(parent_dir))
    args = parser.parse_args()
    features, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.3, random_state=0, stratify=labels
    )
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    epochs = max(round(args.epochs), 1)
    config = np.array([args.lr, args.alpha, args.hidden, args.seed], dtype=float)
    state = initial_state(x_train.shape[1], args.hidden, 10, args.seed)
    if args.resume_from is not None:
        resumed = load(args.resume_from, config, epochs, state)
        if resumed is not None:
            print(f"resuming from epoch {resumed.epoch} ({args.resume_from})", flush=True)
            state = resumed
    while state.epoch < epochs:
        state = train_epoch(state, x_train, y_train, args.lr, args.alpha, args.seed)
        if args.checkpoint_dir is not None:
            save(state, args.checkpoint_dir, config)
    if args.checkpoint_dir is not None and not (args.checkpoint_dir / CHECKPOINT).exists():
        save(state, args.checkpoint_dir, config)  # resumed at the full count: pass it on
    _, proba = forward(state.params, x_test)
    accuracy = float(np.mean(proba.argmax(axis=1) == y_test))
    loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(y_test)), y_test], 1e-12, 1.0))))
    print(f"accuracy={accuracy:.6f}")
    print(f"loss={loss:.6f}")


if __name__ == "__main__":
    main()
