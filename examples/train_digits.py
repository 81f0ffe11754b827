"""Train an RBF support-vector classifier on scikit-learn's digits data set.

Hyperparameters come from the command line; the script prints Katib StdOut metrics::

    accuracy=0.9855
    loss=0.0512

``accuracy`` is the mean 3-fold cross-validated accuracy and ``loss`` the cross-validated error
rate (1 - accuracy). A trial takes about a second on one core.

    python examples/train_digits.py --C 10 --gamma 0.001
"""

from __future__ import annotations

import argparse

from sklearn.datasets import load_digits
from sklearn.model_selection import cross_validate
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC


def main() -> None:
    """Parse hyperparameters, cross-validate, print metrics."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--C", type=float, default=1.0, help="regularisation strength")
    parser.add_argument("--gamma", type=float, default=0.01, help="RBF kernel width")
    parser.add_argument("--kernel", default="rbf", choices=["rbf", "poly", "sigmoid"])
    parser.add_argument("--folds", type=int, default=3)
    args = parser.parse_args()
    features, labels = load_digits(return_X_y=True)
    model = make_pipeline(
        StandardScaler(),
        SVC(C=args.C, gamma=args.gamma, kernel=args.kernel),
    )
    scores = cross_validate(model, features, labels, cv=args.folds, scoring="accuracy")
    accuracy = float(scores["test_score"].mean())
    print(f"accuracy={accuracy:.6f}")
    print(f"loss={1.0 - accuracy:.6f}")


if __name__ == "__main__":
    main()
