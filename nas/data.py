"""Image data for the NAS trial programs: scikit-learn's digits, or CIFAR-10 from disk.

``digits-hard`` is digits made hard enough that architectures differ (plain digits are solved
to 0.97+ by almost any cell): each image is placed at a random offset on a larger canvas and
overlaid with Gaussian noise and random "ink" pixels, all drawn once from the seed, so the data
set is the same on every load.

Both return :class:`ImageData` with float32 tensors ``x`` of shape ``(n, channels, h, w)``
(standardised per channel on the training split) and int64 labels ``y`` of shape ``(n,)``.
Nothing is downloaded: digits ship with scikit-learn, and CIFAR-10 is read from a local copy of
the python version (``cifar-10-batches-py/data_batch_1..5`` and ``test_batch``).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class ImageData:
    """Train and validation splits."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_valid: torch.Tensor
    y_valid: torch.Tensor
    num_classes: int


def _standardise(train: np.ndarray, valid: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    mean = train.mean(axis=(0, 2, 3), keepdims=True)
    std = train.std(axis=(0, 2, 3), keepdims=True) + 1e-6
    return (
        torch.from_numpy(((train - mean) / std).astype(np.float32)),
        torch.from_numpy(((valid - mean) / std).astype(np.float32)),
    )


def digits(seed: int = 0, valid_fraction: float = 0.3) -> ImageData:
    """scikit-learn's 1 797 8x8 digits as 1-channel images, split at random by ``seed``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float64)[:, None, :, :]
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    cut = int(len(y) * (1 - valid_fraction))
    train, valid = order[:cut], order[cut:]
    x_train, x_valid = _standardise(x[train], x[valid])
    return ImageData(x_train, torch.from_numpy(y[train]), x_valid, torch.from_numpy(y[valid]), 10)


def digits_hard(
    seed: int = 0,
    valid_fraction: float = 0.3,
    canvas: int = 12,
    noise: float = 0.3,
    speckle: float = 0.03,
) -> ImageData:
    """Digits shifted on a ``canvas``-pixel square, with noise; deterministic in ``seed``.

    Pixel values are scaled to ``[0, 1]``; each image goes to a uniform random offset (up to
    ``canvas - 8`` pixels in each direction), then gets ``N(0, noise)`` on every pixel and a
    fraction ``speckle`` of pixels set to 1. The split is :func:`digits`'s for the same seed.
    """
    from sklearn.datasets import load_digits

    if canvas < 8:
        raise ValueError(f"canvas must be at least 8 pixels, got {canvas}")
    if noise < 0 or not 0 <= speckle <= 1:
        raise ValueError(f"noise must be >= 0 and speckle in [0, 1], got {noise}, {speckle}")
    bunch = load_digits()
    images = bunch.images / 16.0
    n = len(images)
    rng = np.random.default_rng([seed, 8128])
    x = np.zeros((n, 1, canvas, canvas))
    offsets = rng.integers(0, canvas - 8 + 1, size=(n, 2))
    for i, (dy, dx) in enumerate(offsets):
        x[i, 0, dy : dy + 8, dx : dx + 8] = images[i]
    x += rng.normal(0.0, noise, size=x.shape)
    x[rng.random(x.shape) < speckle] = 1.0
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(n)
    cut = int(n * (1 - valid_fraction))
    train, valid = order[:cut], order[cut:]
    x_train, x_valid = _standardise(x[train], x[valid])
    return ImageData(x_train, torch.from_numpy(y[train]), x_valid, torch.from_numpy(y[valid]), 10)


def cifar10(root: str | Path, limit: int | None = None) -> ImageData:
    """CIFAR-10 from ``root`` (the ``cifar-10-batches-py`` folder or its parent).

    ``limit`` keeps the first ``limit`` training and ``limit // 5`` test images.
    """
    root = Path(root)
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    if not (root / "test_batch").is_file():
        raise FileNotFoundError(f"no CIFAR-10 python batches under {root}")

    def load(name: str) -> tuple[np.ndarray, np.ndarray]:
        with open(root / name, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        x = np.asarray(batch[b"data"], dtype=np.float64).reshape(-1, 3, 32, 32) / 255.0
        return x, np.asarray(batch[b"labels"], dtype=np.int64)

    parts = [load(f"data_batch_{i}") for i in range(1, 6)]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_valid, y_valid = load("test_batch")
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_valid, y_valid = x_valid[: max(1, limit // 5)], y_valid[: max(1, limit // 5)]
    xt, xv = _standardise(x_train, x_valid)
    return ImageData(xt, torch.from_numpy(y_train), xv, torch.from_numpy(y_valid), 10)


def load(dataset: str, seed: int = 0, limit: int | None = None) -> ImageData:
    """``digits``, ``digits-hard`` or a CIFAR-10 directory path (``cifar10:/path``)."""
    if dataset == "digits":
        return digits(seed)
    if dataset == "digits-hard":
        return digits_hard(seed)
    if dataset.startswith("cifar10:"):
        return cifar10(dataset.removeprefix("cifar10:"), limit)
    raise ValueError(
        f"unknown dataset {dataset!r}: use 'digits', 'digits-hard' or 'cifar10:/path/to/data'"
    )


def batches(
    x: torch.Tensor, y: torch.Tensor, size: int, generator: torch.Generator | None = None
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches, shuffled with ``generator`` (in order without one)."""
    order = torch.randperm(len(y), generator=generator) if generator is not None else None
    idx = order if order is not None else torch.arange(len(y))
    return [(x[idx[i : i + size]], y[idx[i : i + size]]) for i in range(0, len(y), size)]
