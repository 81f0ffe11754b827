"""The DARTS search network: mixed operations over a cell DAG with architecture weights alpha.

Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search" (ICLR 2019). A cell has two
input nodes (the outputs of the two previous cells) and ``num_nodes`` intermediate nodes; node
``i`` sums one *mixed operation* per earlier node ``j``:
``o(x) = sum_k softmax(alpha_ij)_k op_k(x)`` (eq. 2). The cell's output concatenates its
intermediate nodes. Cells at 1/3 and 2/3 of the depth are reduction cells (stride 2 on the
edges from the inputs), with their own alpha.

Arrays: ``alpha_normal`` and ``alpha_reduce`` have shape ``(n_edges, n_ops)`` with
``n_edges = sum_{i<num_nodes} (2 + i)``; edges are ordered node by node, inputs first.
A :class:`Genotype` keeps, per node, the two strongest incoming edges with their strongest op
(§2.4); :meth:`SearchNetwork.fix` turns the network into that discrete architecture.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn


class Genotype(NamedTuple):
    """A derived cell pair: per node, ``[(op, input), (op, input)]``, and the concat range."""

    normal: list[list[tuple[str, int]]]
    normal_concat: range
    reduce: list[list[tuple[str, int]]]
    reduce_concat: range

    def __str__(self) -> str:
        """Katib's printed form (Python's repr of the named tuple) without spaces."""
        return (
            f"Genotype(normal={self.normal},normal_concat={self.normal_concat},"
            f"reduce={self.reduce},reduce_concat={self.reduce_concat})"
        ).replace(" ", "")


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, affine=False)


#: The zero operation: searched (its weight competes in the softmax, DARTS §2.2), never derived.
NONE = "none"


class Zero(nn.Module):
    """The ``none`` primitive: zeros of the output's shape (stride 2 halves the spatial size)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, c, h, w) -> (n, c, ceil(h/stride), ceil(w/stride))`` of zeros."""
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


def search_primitives(primitives: Sequence[str]) -> list[str]:
    """The primitives a search mixes: the given ones plus ``none`` last (as Katib's trial does)."""
    return [*(p for p in primitives if p != NONE), NONE]


def make_op(name: str, c: int, stride: int) -> nn.Module:
    """One primitive by Katib's name: ``none``, ``skip_connection`` or ``<type>_<k>x<k>``."""
    if name == NONE:
        return Zero(stride)
    if name == "skip_connection":
        return nn.Identity() if stride == 1 else FactorizedReduce(c, c)
    match = re.fullmatch(r"([a-z_]+)_(\d+)x\2", name)
    if match is None:
        raise ValueError(f"unknown DARTS primitive {name!r}")
    kind, k = match.group(1), int(match.group(2))
    if kind == "max_pooling":
        return nn.Sequential(nn.MaxPool2d(k, stride, k // 2), _bn(c))
    if kind == "avg_pooling":
        return nn.Sequential(nn.AvgPool2d(k, stride, k // 2, count_include_pad=False), _bn(c))
    if kind == "convolution":
        return nn.Sequential(nn.ReLU(), nn.Conv2d(c, c, k, stride, k // 2, bias=False), _bn(c))
    if kind in ("separable_convolution", "dilated_convolution"):
        dil = 2 if kind == "dilated_convolution" else 1
        pad = dil * (k // 2)
        return nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(c, c, k, stride, pad, dilation=dil, groups=c, bias=False),
            nn.Conv2d(c, c, 1, bias=False),
            _bn(c),
        )
    raise ValueError(f"unknown DARTS primitive {name!r}")


class FactorizedReduce(nn.Module):
    """Halve the spatial size with two offset stride-2 1x1 convolutions (DARTS's reduce)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(c_in, c_out // 2, 1, 2, bias=False)
        self.b = nn.Conv2d(c_in, c_out - c_out // 2, 1, 2, bias=False)
        self.bn = _bn(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, c_in, h, w) -> (n, c_out, ceil(h/2), ceil(w/2))``."""
        y = nn.functional.pad(x, (0, 1, 0, 1))[:, :, 1:, 1:]
        a, b = self.a(x), self.b(y)
        return self.bn(torch.cat([a, b[:, :, : a.shape[2], : a.shape[3]]], dim=1))


def preprocess(c_pp: int, c_p: int, c: int, reduction_prev: bool) -> tuple[nn.Module, nn.Module]:
    """A cell's input adapters: both previous outputs to ``c`` channels at this cell's size.

    When the previous cell reduced, the one before it is twice as large and is reduced too.
    """
    pre0: nn.Module = (
        FactorizedReduce(c_pp, c)
        if reduction_prev
        else nn.Sequential(nn.ReLU(), nn.Conv2d(c_pp, c, 1, bias=False), _bn(c))
    )
    return pre0, nn.Sequential(nn.ReLU(), nn.Conv2d(c_p, c, 1, bias=False), _bn(c))


class MixedOp(nn.Module):
    """``sum_k w_k op_k(x)`` over the primitives; ops with weight exactly 0 are skipped.

    ``none`` adds nothing and is not computed: its weight still takes its share of the softmax,
    so alpha's gradient reaches it through the normalisation.
    """

    def __init__(self, primitives: Sequence[str], c: int, stride: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(make_op(p, c, stride) for p in primitives)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor | None:
        """``weights`` has shape ``(n_ops,)``; ``None`` when every used weight is a constant 0."""
        out: torch.Tensor | None = None
        for w, op in zip(weights, self.ops, strict=True):
            if isinstance(op, Zero) or (not w.requires_grad and float(w) == 0.0):
                continue
            term = w * op(x)
            out = term if out is None else out + term
        return out


class Cell(nn.Module):
    """A normal or reduction cell with ``num_nodes`` intermediate nodes."""

    def __init__(
        self,
        primitives: Sequence[str],
        num_nodes: int,
        c_pp: int,
        c_p: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.num_nodes = num_nodes
        self.pre0, self.pre1 = preprocess(c_pp, c_p, c, reduction_prev)
        self.edges = nn.ModuleList()
        for i in range(num_nodes):
            for j in range(2 + i):
                stride = 2 if reduction and j < 2 else 1
                self.edges.append(MixedOp(primitives, c, stride))

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """``weights``: ``(n_edges, n_ops)``; returns the concatenated intermediate nodes."""
        states = [self.pre0(s0), self.pre1(s1)]
        e = 0
        for _ in range(self.num_nodes):
            terms = [self.edges[e + j](h, weights[e + j]) for j, h in enumerate(states)]
            used = [t for t in terms if t is not None]
            if not used:
                raise ValueError("a cell node has no incoming operation")
            e += len(states)
            node = used[0]
            for t in used[1:]:
                node = node + t
            states.append(node)
        return torch.cat(states[2:], dim=1)


def num_edges(num_nodes: int) -> int:
    """Edges of a cell: node ``i`` has ``2 + i`` inputs."""
    return sum(2 + i for i in range(num_nodes))


class SearchNetwork(nn.Module):
    """Stem, ``num_layers`` cells and a classifier; alpha lives in :attr:`alphas`."""

    def __init__(
        self,
        primitives: Sequence[str],
        in_channels: int,
        num_classes: int,
        num_layers: int,
        init_channels: int = 16,
        num_nodes: int = 4,
        stem_multiplier: int = 3,
    ) -> None:
        super().__init__()
        self.primitives = list(primitives)
        self.num_nodes = num_nodes
        c_stem = stem_multiplier * init_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_stem, 3, 1, 1, bias=False), nn.BatchNorm2d(c_stem)
        )
        c_pp, c_p, c = c_stem, c_stem, init_channels
        reductions = {num_layers // 3, 2 * num_layers // 3} if num_layers >= 3 else set()
        self.cells = nn.ModuleList()
        reduction_prev = False
        for layer in range(num_layers):
            reduction = layer in reductions
            if reduction:
                c *= 2
            cell = Cell(self.primitives, num_nodes, c_pp, c_p, c, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, num_nodes * c
        self.classifier = nn.Linear(c_p, num_classes)
        shape = (num_edges(num_nodes), len(self.primitives))
        self.alpha_normal = nn.Parameter(1e-3 * torch.randn(shape))
        self.alpha_reduce = nn.Parameter(1e-3 * torch.randn(shape))
        self._fixed: tuple[torch.Tensor, torch.Tensor] | None = None

    def alphas(self) -> list[nn.Parameter]:
        """The architecture parameters."""
        return [self.alpha_normal, self.alpha_reduce]

    def weights(self) -> list[nn.Parameter]:
        """The network weights (everything but alpha)."""
        return [p for n, p in self.named_parameters() if not n.startswith("alpha_")]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, classes)``; mixed by softmax(alpha), or the fixed genotype's ops."""
        if self._fixed is not None:
            w_normal, w_reduce = self._fixed
        else:
            w_normal = torch.softmax(self.alpha_normal, dim=-1)
            w_reduce = torch.softmax(self.alpha_reduce, dim=-1)
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, w_reduce if cell.reduction else w_normal)
        return self.classifier(s1.mean(dim=(2, 3)))

    def genotype(self) -> Genotype:
        """The derived architecture: per node the top-2 edges by their best op's weight."""
        concat = range(2, 2 + self.num_nodes)
        return Genotype(
            derive(torch.softmax(self.alpha_normal, -1), self.primitives, self.num_nodes),
            concat,
            derive(torch.softmax(self.alpha_reduce, -1), self.primitives, self.num_nodes),
            concat,
        )

    def fix(self, genotype: Genotype) -> None:
        """Use only ``genotype``'s ops from now on (alpha is then ignored)."""
        self._fixed = (
            genotype_weights(genotype.normal, self.primitives, self.num_nodes),
            genotype_weights(genotype.reduce, self.primitives, self.num_nodes),
        )


def derive(
    weights: torch.Tensor, primitives: Sequence[str], num_nodes: int
) -> list[list[tuple[str, int]]]:
    """Per node, the two incoming edges whose strongest op is strongest (§2.4).

    ``weights``: ``(n_edges, n_ops)`` softmax(alpha); ops named ``none`` never win.
    """
    usable = torch.tensor([p != NONE for p in primitives])
    w = weights.detach().masked_fill(~usable, -1.0)
    nodes = []
    e = 0
    for i in range(num_nodes):
        n_in = 2 + i
        best_w, best_k = w[e : e + n_in].max(dim=1)
        top = sorted(torch.argsort(best_w, descending=True)[: min(2, n_in)].tolist())
        nodes.append([(primitives[int(best_k[j])], int(j)) for j in top])
        e += n_in
    return nodes


def genotype_weights(
    nodes: Sequence[Sequence[tuple[str, int]]], primitives: Sequence[str], num_nodes: int
) -> torch.Tensor:
    """One-hot ``(n_edges, n_ops)`` weights of a genotype's chosen (op, input) pairs."""
    weights = torch.zeros(num_edges(num_nodes), len(primitives))
    e = 0
    for i in range(num_nodes):
        for op, j in nodes[i]:
            weights[e + j, primitives.index(op)] = 1.0
        e += 2 + i
    return weights


def random_genotype(
    primitives: Sequence[str], num_nodes: int, generator: torch.Generator
) -> Genotype:
    """A genotype of the same size with uniformly random edges and ops (never ``none``)."""
    usable = [p for p in primitives if p != NONE]

    def cell() -> list[list[tuple[str, int]]]:
        nodes = []
        for i in range(num_nodes):
            inputs = sorted(torch.randperm(2 + i, generator=generator)[:2].tolist())
            ops = torch.randint(len(usable), (len(inputs),), generator=generator).tolist()
            nodes.append([(usable[k], int(j)) for k, j in zip(ops, inputs, strict=True)])
        return nodes

    concat = range(2, 2 + num_nodes)
    return Genotype(cell(), concat, cell(), concat)
