"""The ENAS LSTM controller and its REINFORCE update."""

from __future__ import annotations

import pytest
import torch

from katib.nas.enas.controller import Controller, ControllerConfig, ReinforceConfig, reinforce_step


def make(seed: int = 0, layers: int = 4, ops: int = 3, **kw: float) -> Controller:
    return Controller(
        ControllerConfig(num_layers=layers, num_ops=ops, hidden_size=16, **kw),  # type: ignore[arg-type]
        torch.Generator().manual_seed(seed),
    )


def test_sampled_architectures_have_katibs_shape_and_score_consistently() -> None:
    c = make()
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        sampled = c(generator=g)
        assert [len(r) for r in sampled.arc] == [1, 2, 3, 4]
        assert all(0 <= r[0] < 3 and set(r[1:]) <= {0, 1} for r in sampled.arc)
        assert sampled.skip_count == sum(sum(r[1:]) for r in sampled.arc)
        scored = c(sampled.arc)
        assert scored.arc == sampled.arc
        assert torch.allclose(scored.log_prob, sampled.log_prob)


def test_same_seed_same_weights_and_samples() -> None:
    a, b = make(3), make(3)
    ga, gb = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert [a(generator=ga).arc for _ in range(4)] == [b(generator=gb).arc for _ in range(4)]
    assert not torch.equal(make(4).w_soft.weight, a.w_soft.weight)


def test_probabilities_of_all_architectures_sum_to_one() -> None:
    c = make(layers=2, ops=2)
    arcs = [[[o0], [o1, s]] for o0 in range(2) for o1 in range(2) for s in range(2)]
    total = sum(float(c(a).log_prob.detach().exp()) for a in arcs)
    assert total == pytest.approx(1.0, abs=1e-5)


def test_temperature_and_tanh_constant_bound_the_logits() -> None:
    c = make(temperature=1.0, tanh_const=0.5)
    logits = c._sharpen(torch.tensor([100.0, -100.0]))
    assert torch.allclose(logits, torch.tensor([0.5, -0.5]), atol=1e-6)


def test_reinforce_raises_the_rewarded_architecture_and_lowers_the_other() -> None:
    c = make(seed=2)
    g = torch.Generator().manual_seed(0)
    good, bad = c(generator=g).arc, c(generator=g).arc
    while bad == good:
        bad = c(generator=g).arc
    before_good, before_bad = float(c(good).log_prob.detach()), float(c(bad).log_prob.detach())
    opt = torch.optim.Adam(c.parameters(), lr=0.01)
    config = ReinforceConfig(learning_rate=0.01, train_steps=5, skip_weight=None)
    baseline = reinforce_step(c, opt, [good, bad], [1.0, 0.0], None, config)
    assert float(c(good).log_prob.detach()) > before_good + 0.05
    assert float(c(bad).log_prob.detach()) < before_bad - 0.05
    assert baseline == pytest.approx(0.5)  # first batch: its own mean
    # A later batch moves the baseline by (1 - decay) towards the batch mean.
    assert reinforce_step(c, opt, [good], [1.0], baseline, config) == pytest.approx(
        0.999 * 0.5 + 0.001 * 1.0
    )


def test_skip_penalty_pulls_the_skip_rate_towards_the_target() -> None:
    c = make(seed=5, layers=6, ops=2, skip_target=0.05)
    arcs = [c(generator=torch.Generator().manual_seed(i)).arc for i in range(4)]

    def mean_skip_prob() -> float:
        return sum(float(c(a).skip_kl.detach()) for a in arcs)

    before = mean_skip_prob()
    opt = torch.optim.Adam(c.parameters(), lr=0.01)
    config = ReinforceConfig(entropy_weight=None, skip_weight=1.0, train_steps=10)
    reinforce_step(c, opt, arcs, [0.0] * len(arcs), None, config)  # no reward signal
    assert mean_skip_prob() < before
