"""DARTS mixed operations, genotype derivation and the bilevel search on digits."""

from __future__ import annotations

import pytest
import torch

from katib.nas.darts.algorithm import DARTSSettings
from katib.nas.darts.model import (
    MixedOp,
    SearchNetwork,
    derive,
    genotype_weights,
    make_op,
    num_edges,
    random_genotype,
)
from katib.nas.darts.search import search
from katib.nas.data import digits

PRIMS = ["max_pooling_3x3", "separable_convolution_3x3", "skip_connection"]


def test_mixed_op_is_the_weighted_sum_of_its_ops() -> None:
    torch.manual_seed(0)
    mixed = MixedOp(PRIMS, 4, 1).eval()
    x = torch.randn(2, 4, 6, 6)
    w = torch.tensor([0.2, 0.5, 0.3])
    expected = sum(wk * op(x) for wk, op in zip(w, mixed.ops, strict=True))
    assert torch.allclose(mixed(x, w), expected, atol=1e-6)
    assert torch.equal(mixed(x, torch.tensor([0.0, 0.0, 1.0])), x)  # skip only
    assert mixed(x, torch.zeros(3)) is None  # an edge a genotype does not use


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize(
    "name", [*PRIMS, "dilated_convolution_5x5", "avg_pooling_3x3", "convolution_3x3"]
)
def test_every_primitive_keeps_channels_and_halves_with_stride_2(name: str, stride: int) -> None:
    y = make_op(name, 6, stride)(torch.randn(2, 6, 8, 8))
    assert y.shape == (2, 6, 8 // stride, 8 // stride)


def test_unknown_primitive_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown DARTS primitive"):
        make_op("conv_3x5", 4, 1)


def test_derive_keeps_the_two_strongest_edges_per_node_with_their_best_op() -> None:
    # 2 nodes: node 0 has edges 0,1 (inputs); node 1 has edges 2,3,4 (inputs and node 0).
    w = torch.tensor(
        [
            [0.1, 0.8, 0.1],
            [0.6, 0.2, 0.2],
            [0.3, 0.3, 0.4],
            [0.1, 0.1, 0.8],
            [0.7, 0.2, 0.1],
        ]
    )
    nodes = derive(w, PRIMS, 2)
    assert nodes == [
        [("separable_convolution_3x3", 0), ("max_pooling_3x3", 1)],
        [("skip_connection", 1), ("max_pooling_3x3", 2)],
    ]
    one_hot = genotype_weights(nodes, PRIMS, 2)
    assert one_hot.shape == (num_edges(2), 3) and one_hot.sum() == 4
    assert derive(one_hot, PRIMS, 2) == nodes


def test_none_never_wins() -> None:
    w = torch.tensor([[0.9, 0.1], [0.9, 0.05]])
    assert derive(w, ["none", "skip_connection"], 1) == [
        [("skip_connection", 0), ("skip_connection", 1)]
    ]


def test_fixed_genotype_network_ignores_alpha() -> None:
    torch.manual_seed(1)
    net = SearchNetwork(PRIMS, 1, 10, 3, init_channels=4, num_nodes=2, stem_multiplier=1).eval()
    genotype = random_genotype(PRIMS, 2, torch.Generator().manual_seed(0))
    net.fix(genotype)
    x = torch.randn(3, 1, 8, 8)
    before = net(x)
    with torch.no_grad():
        net.alpha_normal.add_(5.0)
    assert torch.allclose(net(x), before)
    assert str(genotype).startswith("Genotype(normal=[[(") and " " not in str(genotype)


@pytest.mark.parametrize("order", [1, 2])
def test_search_on_digits_moves_alpha_and_beats_chance(order: int) -> None:
    torch.manual_seed(0)
    data = digits(0)
    net = SearchNetwork(PRIMS, 1, 10, 1, init_channels=8, num_nodes=1, stem_multiplier=1)
    alpha0 = net.alpha_normal.detach().clone()
    s = DARTSSettings(num_epochs=2, batch_size=32, w_lr=0.1, alpha_lr=0.01, print_step=1000)
    lines: list[str] = []
    genotype, acc = search(net, data, s, order=order, print_fn=lines.append)
    assert acc > 0.3  # chance is 0.1
    assert not torch.allclose(net.alpha_normal, alpha0)
    assert any(line.startswith("Validation-Accuracy=") for line in lines)
    assert f"Best-Genotype={genotype}" in lines
