"""Train a small neural network on scikit-learn's digits for a given number of epochs.

The multi-fidelity examples (hyperband, asha, bohb) set ``--epochs``: a trial's resource. The
script prints Katib StdOut metrics once training ends::

    accuracy=0.9611
    loss=0.1423

``accuracy`` is the held-out accuracy (a fixed 30 % split) and ``loss`` the held-out
log-loss. One epoch is one pass of mini-batch SGD with momentum; an epoch takes a few
milliseconds, so the process start dominates a trial.

    python examples/train_mlp.py --lr 0.05 --alpha 1e-4 --hidden 32 --epochs 9
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler


def main() -> None:
    """Parse hyperparameters, train for ``--epochs`` passes, print metrics."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lr", type=float, default=0.01, help="initial learning rate")
    parser.add_argument("--alpha", type=float, default=1e-4, help="L2 penalty")
    parser.add_argument("--hidden", type=int, default=32, help="hidden units")
    parser.add_argument("--epochs", type=float, default=1, help="passes over the data")
    args = parser.parse_args()
    features, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.3, random_state=0, stratify=labels
    )
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    model = MLPClassifier(
        hidden_layer_sizes=(args.hidden,),
        alpha=args.alpha,
        learning_rate_init=args.lr,
        solver="sgd",
        momentum=0.9,
        batch_size=64,
        random_state=0,
    )
    classes = np.unique(labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(max(round(args.epochs), 1)):
            model.partial_fit(x_train, y_train, classes=classes)
    accuracy = float(model.score(x_test, y_test))
    loss = float(log_loss(y_test, model.predict_proba(x_test), labels=classes))
    print(f"accuracy={accuracy:.6f}")
    print(f"loss={loss:.6f}")


if __name__ == "__main__":
    main()
