"""The evaluation network of a derived DARTS genotype: a stack of discrete cells.

DARTS (Liu et al. 2019, §3.2) does not judge a cell inside the search supernet: it builds a
larger network of the derived cell — more cells, each edge only its chosen operation — and
trains it from scratch. :class:`EvalNetwork` is that network: a stem, ``num_cells`` cells
(reduction cells at 1/3 and 2/3 of the depth, using the genotype's ``reduce`` cell, the others
its ``normal`` cell), global average pooling and a linear classifier. Node ``i`` of a cell is
``op_a(state_j) + op_b(state_k)`` for the genotype's two ``(op, j)`` pairs, where states 0 and 1
are the two previous cells' outputs; the cell's output concatenates the ``concat`` states.
The same class builds the network of a random genotype, so both are compared at equal size and
budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from katib.nas.darts.model import Genotype, make_op, preprocess


class FixedCell(nn.Module):
    """One discrete cell: per node, the sum of two chosen operations on earlier states."""

    def __init__(
        self,
        nodes: Sequence[Sequence[tuple[str, int]]],
        concat: Sequence[int],
        c_pp: int,
        c_p: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.pre0, self.pre1 = preprocess(c_pp, c_p, c, reduction_prev)
        self.ops = nn.ModuleList()
        self.inputs: list[list[int]] = []
        for i, node in enumerate(nodes):
            if not node:
                raise ValueError(f"genotype node {i} has no inputs")
            picks = []
            for op, j in node:
                if not 0 <= j < 2 + i:
                    raise ValueError(f"genotype node {i} reads state {j}: it has only {2 + i}")
                self.ops.append(make_op(op, c, 2 if reduction and j < 2 else 1))
                picks.append(j)
            self.inputs.append(picks)
        self.concat = list(concat)
        n_states = 2 + len(nodes)
        if not self.concat or any(not 0 <= k < n_states for k in self.concat):
            raise ValueError(f"genotype concat {self.concat} is outside states 0..{n_states - 1}")
        if reduction and any(k < 2 for k in self.concat):
            raise ValueError("a reduction cell cannot concatenate its (unreduced) inputs")
        self.out_channels = len(self.concat) * c

    def forward(self, s0: torch.Tensor, s1: torch.Tensor) -> torch.Tensor:
        """The concatenated ``concat`` states."""
        states = [self.pre0(s0), self.pre1(s1)]
        k = 0
        for picks in self.inputs:
            node = self.ops[k](states[picks[0]])
            for j in picks[1:]:
                k += 1
                node = node + self.ops[k](states[j])
            k += 1
            states.append(node)
        return torch.cat([states[i] for i in self.concat], dim=1)


class EvalNetwork(nn.Module):
    """Stem, ``num_cells`` discrete cells of ``genotype`` and a linear classifier."""

    def __init__(
        self,
        genotype: Genotype,
        in_channels: int,
        num_classes: int,
        num_cells: int,
        init_channels: int = 16,
        stem_multiplier: int = 3,
    ) -> None:
        super().__init__()
        if num_cells < 1:
            raise ValueError(f"num_cells must be at least 1, got {num_cells}")
        c_stem = stem_multiplier * init_channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_stem, 3, 1, 1, bias=False), nn.BatchNorm2d(c_stem)
        )
        reductions = {num_cells // 3, 2 * num_cells // 3} if num_cells >= 3 else set()
        c_pp, c_p, c = c_stem, c_stem, init_channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        for layer in range(num_cells):
            reduction = layer in reductions
            if reduction:
                c *= 2
            nodes, concat = (
                (genotype.reduce, genotype.reduce_concat)
                if reduction
                else (genotype.normal, genotype.normal_concat)
            )
            cell = FixedCell(nodes, concat, c_pp, c_p, c, reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_pp, c_p = c_p, cell.out_channels
        self.classifier = nn.Linear(c_p, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(batch, classes)``."""
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1)
        return self.classifier(s1.mean(dim=(2, 3)))
