"""A plain supervised training loop shared by the trial programs, with Katib StdOut metrics."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import torch
from torch import nn

from katib.nas.data import ImageData, batches


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)`` in evaluation mode."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for xb, yb in batches(x, y, size):
            correct += int((model(xb).argmax(dim=1) == yb).sum().item())
    return correct / max(1, len(y))


def report(metrics: dict[str, object], stream: Callable[[str], object] | None = None) -> None:
    """Print metrics as Katib's StdOut collector reads them: one ``name=value`` per line."""
    write = stream or (lambda line: print(line, flush=True))
    for name, value in metrics.items():
        write(f"{name}={value:.6f}" if isinstance(value, float) else f"{name}={value}")


def fit(
    model: nn.Module,
    data: ImageData,
    epochs: int,
    lr: float = 0.05,
    batch_size: int = 64,
    seed: int = 0,
    names: tuple[str, str, str] = ("epoch", "Train-Loss", "Validation-Accuracy"),
) -> float:
    """SGD with momentum and a cosine schedule; prints ``Validation-Accuracy`` every epoch.

    ``names`` are the printed names of the epoch, the training loss and the accuracy.
    Returns the best validation accuracy.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=3e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, epochs))
    loss_fn = nn.CrossEntropyLoss()
    best = 0.0
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        total = 0.0
        for xb, yb in batches(data.x_train, data.y_train, batch_size, generator):
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total += float(loss.item()) * len(yb)
        schedule.step()
        acc = accuracy(model, data.x_valid, data.y_valid)
        best = max(best, acc)
        print(f"epoch {epoch + 1}/{epochs}: {time.perf_counter() - start:.2f}s", file=sys.stderr)
        report(
            {
                names[0]: epoch + 1,
                names[1]: total / len(data.y_train),
                names[2]: acc,
            }
        )
    return best
