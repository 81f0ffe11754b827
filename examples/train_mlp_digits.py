"""Train a small neural network on scikit-learn's digits, one epoch at a time.

A learning curve for early stopping: after every epoch the script reports the validation
``loss`` (log loss) and ``accuracy`` of an MLP trained by SGD with momentum, either as Katib
StdOut metrics (one line per epoch)::

    epoch=3 loss=0.412731 accuracy=0.893333

or, with ``--log-path``, as one JSON object per epoch in that file (Katib's File collector in
JSON format; values are strings, as Katib's collector requires)::

    {"epoch": "3", "loss": "0.412731", "accuracy": "0.893333", "timestamp": "2026-…Z"}

An epoch takes about 50 ms on one core; a bad learning rate shows within a few epochs.

    python examples/train_mlp_digits.py --lr 0.05 --momentum 0.9 --epochs 20
"""

from __future__ import annotations

import argparse
import json
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import log_loss
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler


def main() -> None:
    """Parse hyperparameters, train epoch by epoch, report metrics after each epoch."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate")
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=32, help="hidden units")
    parser.add_argument("--seed", type=int, default=0, help="data split and initial weights")
    parser.add_argument("--log-path", type=Path, help="write JSON lines here instead of stdout")
    args = parser.parse_args()
    features, labels = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        features, labels, test_size=0.3, random_state=args.seed, stratify=labels
    )
    scaler = StandardScaler().fit(x_train)
    x_train, x_val = scaler.transform(x_train), scaler.transform(x_val)
    model = MLPClassifier(
        hidden_layer_sizes=(args.hidden,),
        solver="sgd",
        learning_rate_init=args.lr,
        momentum=args.momentum,
        batch_size=64,
        random_state=args.seed,
    )
    classes = np.unique(labels)
    out = args.log_path.open("a", encoding="utf-8") if args.log_path else None
    try:
        for epoch in range(1, args.epochs + 1):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.partial_fit(x_train, y_train, classes=classes)
            proba = np.clip(model.predict_proba(x_val), 1e-12, 1.0)
            loss = float(log_loss(y_val, proba, labels=classes))
            accuracy = float(np.mean(model.classes_[proba.argmax(axis=1)] == y_val))
            if out is None:
                print(f"epoch={epoch} loss={loss:.6f} accuracy={accuracy:.6f}", flush=True)
            else:
                stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                row = {"epoch": str(epoch), "loss": f"{loss:.6f}", "accuracy": f"{accuracy:.6f}"}
                out.write(json.dumps({**row, "timestamp": stamp}) + "\n")
                out.flush()
    finally:
        if out is not None:
            out.close()


if __name__ == "__main__":
    main()
