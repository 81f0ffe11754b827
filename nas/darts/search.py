"""The DARTS trial program: bilevel search of alpha and the weights, reporting ``Best-Genotype``.

Flags as in Katib's DARTS trial image (values may keep Katib's ``'`` quoting)::

    python -m katib.nas.darts.search --algorithm-settings="{'num_epochs': 2, ...}" \\
        --search-space="['max_pooling_3x3', 'skip_connection']" --num-layers=2 --dataset=digits

The search mixes the given primitives plus ``none`` (DARTS §2.2, as Katib's trial does);
``none`` is never derived. The training split is halved: weights ``w`` step on one half, alpha
on the other. With ``--order=1`` alpha follows ``grad_alpha L_val(w, alpha)`` (first-order
DARTS); with ``--order=2`` it follows the unrolled gradient ``grad_alpha L_val(w', alpha)`` for
the virtual step ``w' = w - xi (mu m + grad_w L_train(w, alpha) + lambda w)`` — the weight
optimiser's own next step, momentum buffer ``m`` included — which is
``grad_alpha L_val(w', alpha) - xi H grad_w' L_val(w', alpha)`` with the mixed Hessian
``H = d2 L_train / d alpha d w`` applied by central finite differences (DARTS eq. 7-8). Each
epoch prints ``Validation-Accuracy`` and the current ``Best-Genotype`` in Katib's StdOut format
(``name=value``).

With ``--eval-epochs=N`` the best genotype is then judged as DARTS does: an
:class:`~katib.nas.darts.network.EvalNetwork` of ``--eval-cells`` discrete cells is trained from
scratch for ``N`` epochs on the whole training split, printing ``Eval-Accuracy`` each epoch.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import Any

import torch
from torch import nn

from katib.nas.config import unquote
from katib.nas.darts.algorithm import DARTSSettings
from katib.nas.darts.model import Genotype, SearchNetwork, search_primitives
from katib.nas.darts.network import EvalNetwork
from katib.nas.data import ImageData, batches, load
from katib.nas.train import accuracy, fit, report

_loss = nn.CrossEntropyLoss()


class Architect:
    """Updates alpha on validation batches, first- or second-order.

    ``w_optimizer`` is the weights' SGD: the second-order virtual step reads its momentum
    buffers so that ``w'`` is the step the weights are about to take.
    """

    def __init__(
        self,
        net: SearchNetwork,
        s: DARTSSettings,
        order: int,
        w_optimizer: torch.optim.Optimizer | None = None,
    ) -> None:
        self.net = net
        self.order = order
        self.w_optimizer = w_optimizer
        #: The finite-difference step: ``w +- eps d`` with ``eps = fd_step / |d|`` (DARTS: 0.01).
        self.fd_step = 0.01
        self.w_momentum = s.w_momentum
        self.w_weight_decay = s.w_weight_decay
        self.optimizer = torch.optim.Adam(
            net.alphas(), lr=s.alpha_lr, betas=(0.5, 0.999), weight_decay=s.alpha_weight_decay
        )

    def step(
        self,
        train: tuple[torch.Tensor, torch.Tensor],
        valid: tuple[torch.Tensor, torch.Tensor],
        xi: float,
    ) -> None:
        """One alpha step."""
        self.optimizer.zero_grad()
        if self.order == 1:
            _loss(self.net(valid[0]), valid[1]).backward()  # type: ignore[no-untyped-call]
        else:
            self._unrolled(train, valid, xi)
        self.optimizer.step()

    def _unrolled(
        self,
        train: tuple[torch.Tensor, torch.Tensor],
        valid: tuple[torch.Tensor, torch.Tensor],
        xi: float,
    ) -> None:
        weights, alphas = self.net.weights(), self.net.alphas()
        saved = [w.detach().clone() for w in weights]
        grads = _grad(_loss(self.net(train[0]), train[1]), weights)
        state = self.w_optimizer.state if self.w_optimizer is not None else {}
        with torch.no_grad():  # w' = w - xi (mu m + grad_w L_train + lambda w)
            for w, g in zip(weights, grads, strict=True):
                buf = state.get(w, {}).get("momentum_buffer")
                step = g + self.w_weight_decay * w
                if buf is not None:
                    step = step + self.w_momentum * buf
                w.sub_(xi * step)
        val_loss = _loss(self.net(valid[0]), valid[1])
        g_all = _grad(val_loss, [*alphas, *weights])
        d_alpha, d_w = g_all[: len(alphas)], g_all[len(alphas) :]
        with torch.no_grad():
            for w, s in zip(weights, saved, strict=True):
                w.copy_(s)
        norm = torch.sqrt(sum((d * d).sum() for d in d_w))  # type: ignore[arg-type]
        eps = self.fd_step / max(float(norm), 1e-12)
        hessian = []
        for sign in (1.0, -2.0):  # w + eps d_w, then w - eps d_w
            with torch.no_grad():
                for w, d in zip(weights, d_w, strict=True):
                    w.add_(sign * eps * d)
            hessian.append(_grad(_loss(self.net(train[0]), train[1]), alphas))
        with torch.no_grad():
            for w, s in zip(weights, saved, strict=True):
                w.copy_(s)
        for a, da, hp, hm in zip(alphas, d_alpha, hessian[0], hessian[1], strict=True):
            a.grad = da - xi * (hp - hm) / (2 * eps)


def _grad(loss: torch.Tensor, params: list[Any]) -> list[torch.Tensor]:
    """``∂loss/∂p`` for each parameter, zeros for those the loss does not use."""
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=True)]


def search(
    net: SearchNetwork,
    data: ImageData,
    s: DARTSSettings,
    order: int = 1,
    seed: int = 0,
    print_fn: Any = None,
) -> tuple[Genotype, float]:
    """Run ``s.num_epochs`` epochs; returns the best epoch's genotype and validation accuracy."""
    say = print_fn or (lambda line: print(line, flush=True))
    generator = torch.Generator().manual_seed(seed)
    half = len(data.y_train) // 2
    xw, yw = data.x_train[:half], data.y_train[:half]
    xa, ya = data.x_train[half:], data.y_train[half:]
    w_opt = torch.optim.SGD(
        net.weights(), lr=s.w_lr, momentum=s.w_momentum, weight_decay=s.w_weight_decay
    )
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(w_opt, s.num_epochs, eta_min=s.w_lr_min)
    architect = Architect(net, s, order, w_opt)
    size = s.batch_size or 64
    best: tuple[Genotype, float] = (net.genotype(), -1.0)
    for epoch in range(s.num_epochs):
        start = time.perf_counter()
        lr = float(schedule.get_last_lr()[0])
        net.train()
        pairs = zip(
            batches(xw, yw, size, generator), batches(xa, ya, size, generator), strict=False
        )
        for step, (train, valid) in enumerate(pairs):
            architect.step(train, valid, lr)
            w_opt.zero_grad()
            loss = _loss(net(train[0]), train[1])
            loss.backward()  # type: ignore[no-untyped-call]
            nn.utils.clip_grad_norm_(net.weights(), s.w_grad_clip)
            w_opt.step()
            if (step + 1) % s.print_step == 0:
                print(
                    f"epoch {epoch + 1} step {step + 1}: loss {loss.item():.4f}", file=sys.stderr
                )
        schedule.step()
        acc = accuracy(net, data.x_valid, data.y_valid)
        genotype = net.genotype()
        if acc > best[1]:
            best = (genotype, acc)
        print(f"epoch {epoch + 1}: {time.perf_counter() - start:.2f}s", file=sys.stderr)
        report(
            {"epoch": epoch + 1, "Validation-Accuracy": acc, "Best-Genotype": str(best[0])}, say
        )
    return best


def main(argv: list[str] | None = None) -> int:
    """Parse Katib's flags, search, report; exit status 2 on bad flags."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algorithm-settings", default="{}")
    p.add_argument("--search-space", required=True)
    p.add_argument("--num-layers", default="1")
    p.add_argument("--dataset", default="digits", help="digits, digits-hard or cifar10:/path")
    p.add_argument("--limit", type=int, default=None, help="CIFAR-10 training images")
    p.add_argument("--order", type=int, choices=(1, 2), default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--eval-epochs", type=int, default=0, help="then train the genotype's network (0: don't)"
    )
    p.add_argument("--eval-cells", type=int, default=None, help="its cells (default 2x layers)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        raw = unquote(args.algorithm_settings)
        known = {f: raw[f] for f in DARTSSettings.__dataclass_fields__ if raw.get(f) is not None}
        types = {f: type(getattr(DARTSSettings(), f) or 0) for f in known}
        s = DARTSSettings(**{f: types[f](v) for f, v in known.items()})
        primitives = search_primitives([str(x) for x in unquote(args.search_space)])
        num_layers = int(str(args.num_layers).strip('"'))
        eval_cells = 2 * num_layers if args.eval_cells is None else args.eval_cells
        if args.eval_epochs < 0:
            raise ValueError(f"--eval-epochs must be >= 0, got {args.eval_epochs}")
        if eval_cells < 1:
            raise ValueError(f"--eval-cells must be >= 1, got {eval_cells}")
        data = load(args.dataset, args.seed, args.limit)
        torch.manual_seed(args.seed)
        net = SearchNetwork(
            primitives,
            data.x_train.shape[1],
            data.num_classes,
            num_layers,
            s.init_channels,
            s.num_nodes,
            s.stem_multiplier,
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        print(f"error: bad DARTS arguments: {exc}", file=sys.stderr)
        return 2
    genotype, acc = search(net, data, s, args.order, args.seed)
    print(f"best validation accuracy {acc:.4f}", file=sys.stderr)
    print(f"Best-Genotype={genotype}", flush=True)
    if args.eval_epochs > 0:
        torch.manual_seed(args.seed)
        model = EvalNetwork(
            genotype,
            data.x_train.shape[1],
            data.num_classes,
            eval_cells,
            s.init_channels,
            s.stem_multiplier,
        )
        # Names that a "Validation-Accuracy" metrics filter does not also match.
        names = ("Eval-Epoch", "Eval-Loss", "Eval-Accuracy")
        acc = fit(model, data, args.eval_epochs, s.w_lr, s.batch_size or 64, args.seed, names)
    return 0 if math.isfinite(acc) else 1


if __name__ == "__main__":
    sys.exit(main())
