"""DARTS evaluation network, the ``none`` op, the second-order step and ``digits-hard``."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

from katib.nas.darts.algorithm import DARTSSettings
from katib.nas.darts.model import (
    Genotype,
    MixedOp,
    SearchNetwork,
    Zero,
    make_op,
    random_genotype,
    search_primitives,
)
from katib.nas.darts.network import EvalNetwork, FixedCell
from katib.nas.darts.search import Architect, main
from katib.nas.data import digits_hard, load

PRIMS = ["max_pooling_3x3", "separable_convolution_3x3", "skip_connection"]


def test_none_is_searched_last_and_adds_nothing() -> None:
    assert search_primitives(PRIMS) == [*PRIMS, "none"]
    assert search_primitives(["none", *PRIMS]) == [*PRIMS, "none"]
    x = torch.randn(2, 3, 7, 7)
    assert torch.equal(make_op("none", 3, 1)(x), torch.zeros_like(x))
    assert make_op("none", 3, 2)(x).shape == (2, 3, 4, 4)
    torch.manual_seed(0)
    mixed = MixedOp(search_primitives(PRIMS), 3, 1).eval()
    alpha = torch.zeros(4, requires_grad=True)
    w = torch.softmax(alpha, -1)
    out = mixed(x, w)
    assert out is not None
    skip_only = mixed(x, torch.tensor([0.0, 0.0, 1.0, 0.0]))
    assert torch.equal(skip_only, x)
    out.sum().backward()  # type: ignore[no-untyped-call]
    assert alpha.grad is not None and float(alpha.grad[3]) != 0.0  # none's share of the softmax
    assert isinstance(mixed.ops[3], Zero)


def test_random_genotype_never_draws_none() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        genotype = random_genotype(search_primitives(PRIMS), 3, g)
        ops = {op for node in genotype.normal + genotype.reduce for op, _ in node}
        assert "none" not in ops


@pytest.mark.parametrize("cells", [1, 3, 5])
def test_eval_network_builds_from_a_genotype_and_trains_a_step(cells: int) -> None:
    genotype = random_genotype(PRIMS, 2, torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    net = EvalNetwork(genotype, 1, 10, cells, init_channels=4, stem_multiplier=2)
    cell_list = [c for c in net.cells if isinstance(c, FixedCell)]
    assert len(cell_list) == cells
    n_reduce = sum(c.reduction for c in cell_list)
    assert n_reduce == (2 if cells >= 3 else 0)
    x, y = torch.randn(8, 1, 12, 12), torch.randint(10, (8,))
    assert net(x).shape == (8, 10)
    before = [p.detach().clone() for p in net.parameters()]
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(net(x), y)
    loss.backward()  # type: ignore[no-untyped-call]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    opt.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))
    assert nn.functional.cross_entropy(net(x), y) < loss  # one step on the same batch helps


def test_eval_network_uses_only_the_genotype_ops() -> None:
    concat = range(2, 4)
    only_pool = Genotype(
        [[("max_pooling_3x3", 0), ("max_pooling_3x3", 1)]] * 2,
        concat,
        [[("max_pooling_3x3", 0), ("max_pooling_3x3", 1)]] * 2,
        concat,
    )
    net = EvalNetwork(only_pool, 1, 10, 3, init_channels=4, stem_multiplier=1)
    ops = [m for c in net.cells if isinstance(c, FixedCell) for m in c.ops.modules()]
    convs = [m for m in ops if isinstance(m, nn.Conv2d)]
    assert not convs  # pooling edges have no weights; only pre-processing convolutions exist


@pytest.mark.parametrize(
    ("nodes", "concat", "message"),
    [
        ([[("skip_connection", 0), ("skip_connection", 3)]], range(2, 3), "reads state 3"),
        ([[]], range(2, 3), "node 0 has no inputs"),
        ([[("skip_connection", 0)]], range(2, 5), "concat"),
    ],
)
def test_eval_network_rejects_a_bad_genotype(
    nodes: list[list[tuple[str, int]]], concat: range, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        EvalNetwork(Genotype(nodes, concat, nodes, concat), 1, 10, 1, init_channels=4)


def _exact_unrolled_grad(
    net: SearchNetwork,
    train: tuple[torch.Tensor, torch.Tensor],
    valid: tuple[torch.Tensor, torch.Tensor],
    xi: float,
    momentum: float,
    weight_decay: float,
    buffers: dict[str, torch.Tensor],
) -> list[torch.Tensor]:
    """``d/d alpha L_val(w - xi (mu m + grad_w L_train(w, alpha) + lambda w), alpha)`` exactly."""
    named = dict(net.named_parameters())
    alphas = {n: p.detach().clone().requires_grad_() for n, p in named.items() if "alpha" in n}
    weights = {n: p.detach().clone().requires_grad_() for n, p in named.items() if n not in alphas}

    Batch = tuple[torch.Tensor, torch.Tensor]

    def loss(params: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(net, params, (batch[0],)), batch[1])

    grads = torch.autograd.grad(
        loss({**weights, **alphas}, train), list(weights.values()), create_graph=True
    )
    stepped = {
        n: w - xi * (g + weight_decay * w + momentum * buffers.get(n, torch.zeros_like(w)))
        for (n, w), g in zip(weights.items(), grads, strict=True)
    }
    final = torch.autograd.grad(
        loss({**stepped, **alphas}, valid), list(alphas.values()), allow_unused=True
    )  # alpha_reduce is unused by a one-cell network: its gradient is 0
    pairs = zip(alphas.values(), final, strict=True)
    return [torch.zeros_like(a) if g is None else g for a, g in pairs]


def test_second_order_step_matches_the_exact_unrolled_gradient_momentum_included() -> None:
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        net = SearchNetwork(search_primitives(PRIMS), 1, 3, 1, 2, 2, 1)
        with torch.no_grad():  # alpha away from uniform, so the Hessian term is not tiny
            for a in net.alphas():
                a.normal_(0.0, 1.0)
        train = (torch.randn(6, 1, 5, 5), torch.randint(3, (6,)))
        valid = (torch.randn(6, 1, 5, 5), torch.randint(3, (6,)))
        s = DARTSSettings(w_momentum=0.9, w_weight_decay=0.01, alpha_lr=0.0, alpha_weight_decay=0)
        w_opt = torch.optim.SGD(net.weights(), lr=0.5, momentum=0.9, weight_decay=0.01)
        for _ in range(2):  # real steps, so the momentum buffers are not zero
            w_opt.zero_grad()
            nn.functional.cross_entropy(net(train[0]), train[1]).backward()  # type: ignore[no-untyped-call]
            w_opt.step()
        names = {id(p): n for n, p in net.named_parameters()}
        buffers = {names[id(p)]: st["momentum_buffer"] for p, st in w_opt.state.items()}
        xi = 0.5
        exact = _exact_unrolled_grad(net, train, valid, xi, 0.9, 0.01, buffers)
        without_momentum = _exact_unrolled_grad(net, train, valid, xi, 0.0, 0.01, buffers)
        weights_before = [w.detach().clone() for w in net.weights()]
        alphas_before = [a.detach().clone() for a in net.alphas()]

        architect = Architect(net, s, order=2, w_optimizer=w_opt)
        architect.fd_step = 1e-5  # DARTS's 0.01 is coarse for this tiny net (3% off)
        architect.step(train, valid, xi)

        for w, before in zip(net.weights(), weights_before, strict=True):
            assert torch.equal(w, before)  # the virtual steps are undone
        for a, before in zip(net.alphas(), alphas_before, strict=True):
            assert torch.equal(a, before)  # alpha_lr 0: only the gradient is set
        got = torch.cat([a.grad.flatten() for a in net.alphas()])  # type: ignore[union-attr]
        want = torch.cat([g.flatten() for g in exact])
        other = torch.cat([g.flatten() for g in without_momentum])
        error = float((got - want).norm() / want.norm())
        assert error < 1e-4, error
        # The check can tell: leaving momentum out of w' is a far larger error.
        assert float((other - want).norm() / want.norm()) > 20 * max(error, 1e-6)
    finally:
        torch.set_default_dtype(torch.float32)


def test_digits_hard_is_deterministic_and_harder_shaped() -> None:
    a, b = digits_hard(0), load("digits-hard", 0)
    assert a.x_train.shape == (1257, 1, 12, 12) and a.x_valid.shape == (540, 1, 12, 12)
    for x, y in zip(
        (a.x_train, a.y_train, a.x_valid, a.y_valid),
        (b.x_train, b.y_train, b.x_valid, b.y_valid),
        strict=True,
    ):
        assert torch.equal(x, y)
    c = digits_hard(1)
    assert not torch.equal(a.x_train, c.x_train)
    assert abs(float(a.x_train.mean())) < 1e-4 and abs(float(a.x_train.std()) - 1) < 1e-2
    with pytest.raises(ValueError, match="canvas"):
        digits_hard(0, canvas=6)
    with pytest.raises(ValueError, match="noise"):
        digits_hard(0, noise=-1.0)
    with pytest.raises(ValueError, match="digits-hard"):
        load("mnist")


def test_search_program_evaluates_the_genotype_in_its_own_network(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        [
            "--algorithm-settings={'num_epochs': 1, 'init_channels': 4, 'num_nodes': 1, "
            "'stem_multiplier': 1, 'batch_size': 64, 'w_lr': 0.1}",
            "--search-space=['max_pooling_3x3', 'skip_connection']",
            "--num-layers=1",
            "--eval-epochs=1",
            "--eval-cells=3",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "Best-Genotype=Genotype(" in out and "none" not in out.split("Best-Genotype=")[-1]
    assert "Eval-Epoch=1" in out and "Eval-Accuracy=" in out
    assert out.count("Validation-Accuracy=") == 1  # the search's only; eval names differ
    assert main(["--search-space=['skip_connection']", "--eval-epochs=-1"]) == 2
