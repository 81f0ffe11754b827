"""The ENAS macro-search controller: an LSTM that samples a layer-by-layer architecture.

Pham et al., "Efficient Neural Architecture Search via Parameter Sharing" (2018), §2.3
(macro search space). For each of ``L`` layers the LSTM emits

* an op id among ``K`` choices: ``logits = w_soft(h)``, sharpened as
  ``tanh_const * tanh(logits / temperature)`` and sampled;
* for layer ``i > 0``, ``i`` skip bits, one per earlier layer ``j``, from additive attention
  ``v · tanh(W1 h_j + W2 h_i)`` (the same temperature / tanh constant), each a Bernoulli.

An architecture is ``arc[i] = [op_id, skip_0, ..., skip_{i-1}]`` (Katib's ``architecture``).
:meth:`Controller.forward` either samples (``given=None``) or scores a given architecture,
returning its log-probability, entropy and the KL divergence of the skip rate from
``skip_target``; :func:`reinforce_step` is the policy-gradient update on evaluated
architectures with an exponential-moving-average baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

Architecture = list[list[int]]


@dataclass(frozen=True)
class ControllerConfig:
    """Shape and sampling constants of the controller (ENAS's names)."""

    num_layers: int
    num_ops: int
    hidden_size: int = 64
    temperature: float | None = 5.0
    tanh_const: float | None = 2.25
    skip_target: float = 0.4


@dataclass
class ArcScore:
    """What one forward pass yields for one architecture (scalars are 0-d tensors)."""

    arc: Architecture
    log_prob: torch.Tensor
    entropy: torch.Tensor
    skip_kl: torch.Tensor
    skip_count: int


class Controller(nn.Module):
    """The LSTM sampler; build it under a seeded ``torch.Generator`` for reproducible weights."""

    def __init__(self, config: ControllerConfig, generator: torch.Generator) -> None:
        super().__init__()
        self.config = config
        h = config.hidden_size
        self.lstm = nn.LSTMCell(h, h)
        self.g_emb = nn.Parameter(torch.empty(1, h))
        self.w_emb = nn.Embedding(config.num_ops, h)
        self.w_soft = nn.Linear(h, config.num_ops, bias=False)
        self.w_attn_1 = nn.Linear(h, h, bias=False)
        self.w_attn_2 = nn.Linear(h, h, bias=False)
        self.v_attn = nn.Linear(h, 1, bias=False)
        with torch.no_grad():  # ENAS initialises uniformly in [-0.1, 0.1]
            for p in self.parameters():
                p.copy_(torch.rand(p.shape, generator=generator, dtype=p.dtype) * 0.2 - 0.1)

    def _sharpen(self, logits: torch.Tensor) -> torch.Tensor:
        if self.config.temperature is not None:
            logits = logits / self.config.temperature
        if self.config.tanh_const is not None:
            logits = self.config.tanh_const * torch.tanh(logits)
        return logits

    def forward(
        self, given: Architecture | None = None, generator: torch.Generator | None = None
    ) -> ArcScore:
        """Sample an architecture (``given=None``) or score ``given``."""
        h_size = self.config.hidden_size
        hx = (torch.zeros(1, h_size), torch.zeros(1, h_size))
        inputs: torch.Tensor = self.g_emb
        anchors: list[torch.Tensor] = []
        anchors_w1: list[torch.Tensor] = []
        log_prob = torch.zeros(())
        entropy = torch.zeros(())
        skip_kl = torch.zeros(())
        skips = 0
        target = torch.tensor([1.0 - self.config.skip_target, self.config.skip_target])
        arc: Architecture = []
        for layer in range(self.config.num_layers):
            hx = self.lstm(inputs, hx)
            logits = self._sharpen(self.w_soft(hx[0]))[0]
            log_p = torch.log_softmax(logits, dim=-1)
            if given is None:
                op = int(torch.multinomial(log_p.exp(), 1, generator=generator).item())
            else:
                op = int(given[layer][0])
            log_prob = log_prob + log_p[op]
            entropy = entropy - (log_p.exp() * log_p).sum()
            row = [op]
            inputs = self.w_emb(torch.tensor([op]))
            hx = self.lstm(inputs, hx)
            if layer > 0:
                query = torch.tanh(torch.cat(anchors_w1, dim=0) + self.w_attn_2(hx[0]))
                attn = self._sharpen(self.v_attn(query))  # (layer, 1)
                two = torch.cat([-attn, attn], dim=1)  # logits of skip = 0 / 1
                log_q = torch.log_softmax(two, dim=1)
                if given is None:
                    bits = torch.multinomial(log_q.exp(), 1, generator=generator)[:, 0]
                else:
                    bits = torch.tensor(given[layer][1 : layer + 1], dtype=torch.long)
                log_prob = log_prob + log_q.gather(1, bits[:, None]).sum()
                entropy = entropy - (log_q.exp() * log_q).sum()
                q = log_q.exp()
                skip_kl = skip_kl + (q * (log_q - torch.log(target))).sum()
                row += [int(b) for b in bits.tolist()]
                skips += int(bits.sum().item())
                chosen = bits.to(torch.float32)[None, :]
                inputs = (chosen @ torch.cat(anchors, dim=0)) / (1.0 + chosen.sum())
            else:
                inputs = hx[0]
            anchors.append(hx[0])
            anchors_w1.append(self.w_attn_1(hx[0]))
            arc.append(row)
        return ArcScore(arc, log_prob, entropy, skip_kl, skips)


@dataclass(frozen=True)
class ReinforceConfig:
    """Coefficients of the controller's loss and optimiser (Katib's setting names)."""

    learning_rate: float = 5e-5
    entropy_weight: float | None = 1e-5
    skip_weight: float | None = 0.8
    baseline_decay: float = 0.999
    train_steps: int = 50


def reinforce_step(
    controller: Controller,
    optimizer: torch.optim.Optimizer,
    arcs: list[Architecture],
    rewards: list[float],
    baseline: float | None,
    config: ReinforceConfig,
) -> float:
    """Update on one evaluated batch; returns the new baseline.

    The advantage of architecture ``a_i`` is ``r_i - b`` with ``b`` the EMA baseline before this
    batch (the batch mean for the first batch, so the first update is not one-sided). The loss

        L = -mean_i[(r_i - b) * log pi(a_i)] - w_H * mean_i H(a_i) + w_skip * mean_i KL_i

    is minimised for ``train_steps`` Adam steps (the advantages stay fixed); then
    ``b <- decay * b + (1 - decay) * mean(r)``.
    """
    mean_reward = sum(rewards) / len(rewards)
    base = mean_reward if baseline is None else baseline
    advantages = torch.tensor([r - base for r in rewards], dtype=torch.float32)
    for _ in range(config.train_steps):
        scores = [controller(arc) for arc in arcs]
        log_probs = torch.stack([s.log_prob for s in scores])
        loss = -(advantages * log_probs).mean()
        if config.entropy_weight is not None:
            loss = loss - config.entropy_weight * torch.stack([s.entropy for s in scores]).mean()
        if config.skip_weight is not None:
            loss = loss + config.skip_weight * torch.stack([s.skip_kl for s in scores]).mean()
        optimizer.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
    return config.baseline_decay * base + (1.0 - config.baseline_decay) * mean_reward
