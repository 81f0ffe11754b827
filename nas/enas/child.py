"""The ENAS child network, built from Katib's ``architecture`` and ``nn_config``.

Layer ``i`` applies its op (``arc[i][0]``, looked up in ``nn_config.embedding``) to the output of
layer ``i-1`` and adds the outputs of the earlier layers ``j`` whose skip bit ``arc[i][1+j]`` is 1,
each resized (adaptive average pooling) and projected (1x1 convolution) when its shape differs.
A stem convolution maps the input to the first op's channels; global average pooling and a
linear layer give ``output_sizes[0]`` logits. Supported ops (Katib's trial image's names):
``convolution``, ``separable_convolution`` (``filter_size``, ``num_filter``, ``stride``),
``depthwise_convolution`` (``filter_size``, ``stride``, ``depth_multiplier``) and ``reduction``
(``reduction_type`` max/avg pooling, ``pool_size``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

STEM_CHANNELS = 16


def _conv_out(op: dict[str, Any], channels: int) -> tuple[nn.Module, int]:
    kind, p = op["opt_type"], op.get("opt_params", {})
    k = int(p.get("filter_size", 3))
    stride = int(p.get("stride", 1))
    if kind == "convolution":
        out = int(p.get("num_filter", channels))
        body: nn.Module = nn.Conv2d(channels, out, k, stride, k // 2, bias=False)
    elif kind == "separable_convolution":
        out = int(p.get("num_filter", channels))
        body = nn.Sequential(
            nn.Conv2d(channels, channels, k, stride, k // 2, groups=channels, bias=False),
            nn.Conv2d(channels, out, 1, bias=False),
        )
    elif kind == "depthwise_convolution":
        out = channels * int(p.get("depth_multiplier", 1))
        body = nn.Conv2d(channels, out, k, stride, k // 2, groups=channels, bias=False)
    elif kind == "reduction":
        size = int(p.get("pool_size", 2))
        pool = (
            nn.MaxPool2d
            if p.get("reduction_type", "max_pooling") == "max_pooling"
            else nn.AvgPool2d
        )
        return pool(size, size, ceil_mode=True), channels
    else:
        raise ValueError(f"unsupported operation type {kind!r}")
    return nn.Sequential(body, nn.BatchNorm2d(out), nn.ReLU()), out


class ChildNetwork(nn.Module):
    """A macro-search child network (see the module docstring)."""

    def __init__(self, arc: list[list[int]], nn_config: dict[str, Any]) -> None:
        super().__init__()
        in_channels = int(nn_config["input_sizes"][-1])
        classes = int(nn_config["output_sizes"][0])
        embedding = {int(k): v for k, v in nn_config["embedding"].items()}
        self.arc = arc
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, STEM_CHANNELS, 3, 1, 1, bias=False),
            nn.BatchNorm2d(STEM_CHANNELS),
        )
        channels = [STEM_CHANNELS]
        self.ops = nn.ModuleList()
        self.projections = nn.ModuleDict()
        for i, row in enumerate(arc):
            if row[0] not in embedding:
                raise ValueError(f"architecture layer {i}: op id {row[0]} not in nn_config")
            op, out = _conv_out(embedding[row[0]], channels[-1])
            self.ops.append(op)
            for j, bit in enumerate(row[1 : i + 1]):
                if bit and channels[j + 1] != out:
                    self.projections[f"{i}_{j}"] = nn.Conv2d(channels[j + 1], out, 1, bias=False)
            channels.append(out)
        self.classifier = nn.Linear(channels[-1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``(batch, classes)`` for images ``(batch, c, h, w)``."""
        x = self.stem(x)
        outputs: list[torch.Tensor] = []
        for i, (row, op) in enumerate(zip(self.arc, self.ops, strict=True)):
            y = op(x)
            for j, bit in enumerate(row[1 : i + 1]):
                if not bit:
                    continue
                skip = outputs[j]
                if skip.shape[-2:] != y.shape[-2:]:
                    skip = nn.functional.adaptive_avg_pool2d(skip, y.shape[-2:])
                key = f"{i}_{j}"
                if key in self.projections:
                    skip = self.projections[key](skip)
                y = y + skip
            outputs.append(y)
            x = y
        return self.classifier(x.mean(dim=(2, 3)))
