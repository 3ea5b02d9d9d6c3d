"""SOC fine-tuning of Brownian-bridge models (``agm train``'s drift) and of image models, and the per-loss
learning-rate defaults (docs/steering.md).

Oracle: data N(mu, sd^2) and the bridge x_t = t x1 + (1 - t) x0 + s sqrt(t (1 - t)) z have Gaussian marginals
N(t mu, V_t), V_t = t^2 sd^2 + beta_t^2, beta_t^2 = (1 - t)^2 + s^2 t (1 - t); the bridge drift is
b = (m - x)/(1 - t) with m = E[x1 | x_t = x] = mu + (t sd^2 / V_t)(x - t mu), and the velocity of the marginals is
v = mu + (V_t' / (2 V_t))(x - t mu).
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from agm.methods.steering.soc import (SOC_DEFAULT_LR, SOC_LOSSES, BridgeVelocity, FlatField, MemorylessSchedule, ResidualVelocity,
                                      SOCProblem, make_problem)

MU, SD = 0.5, 0.8


class GaussianBridgeDrift(nn.Module):
    """The exact bridge drift of data N(MU, SD^2) for bridge noise s."""

    def __init__(self, s: float) -> None:
        super().__init__()
        self.s = s

    def forward(self, x, t):
        t = t.reshape(-1, *([1] * (x.dim() - 1)))
        var = t**2 * SD**2 + (1 - t) ** 2 + self.s**2 * t * (1 - t)
        m = MU + t * SD**2 / var * (x - t * MU)
        return (m - x) / (1 - t)


def _marginal_velocity(x, t, s):
    var = t**2 * SD**2 + (1 - t) ** 2 + s**2 * t * (1 - t)
    dvar = 2 * t * SD**2 - 2 * (1 - t) + s**2 * (1 - 2 * t)
    return MU + dvar / (2 * var) * (x - t * MU)


@pytest.mark.parametrize("s", [0.0, 0.5, 1.0])
def test_bridge_velocity_is_the_velocity_of_the_marginals(s):
    """BridgeVelocity(b) = the probability-flow velocity of the bridge's Gaussian marginals (float64, exact);
    with s = 0 it is the drift itself (linear FM)."""
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)[:, None]
    for tv in (0.0, 0.1, 0.5, 0.9, 0.97):
        t = torch.full((x.shape[0],), tv, dtype=torch.float64)
        bv = BridgeVelocity(GaussianBridgeDrift(s), s)
        assert torch.allclose(bv(x, t), _marginal_velocity(x, t[:, None], s), atol=1e-10), (s, tv)
        if s == 0.0:
            assert torch.allclose(bv(x, t), GaussianBridgeDrift(0.0)(x, t), atol=1e-12)


@pytest.mark.parametrize("s", [0.0, 0.5])
def test_bridge_memoryless_schedule_keeps_the_marginals(s):
    """sigma^2 = 2 eta_t with eta_t = (1 - t)/t + s^2/2 (offset 0): the SDE dX = (2 v - X/t) dt + sigma dB with
    the velocity v = c_t x + d_t of the Gaussian marginals keeps their variance, i.e.
    V' = 2 (2 c_t - 1/t) V + sigma^2 exactly (Fokker-Planck of a linear SDE). A wrong eta (e.g. without s^2/2)
    breaks the identity by s^2."""
    sch = MemorylessSchedule(0.0, bridge_sigma=s)
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    var = t**2 * SD**2 + (1 - t) ** 2 + s**2 * t * (1 - t)
    dvar = 2 * t * SD**2 - 2 * (1 - t) + s**2 * (1 - 2 * t)
    c = dvar / (2 * var)
    assert torch.allclose(dvar, 2 * (2 * c - sch.kappa(t)) * var + sch.sigma(t) ** 2, atol=1e-10)
    assert torch.allclose(sch.sigma(t) ** 2, 2 * sch.eta(t), atol=1e-12)


def test_memoryless_rollout_of_a_bridge_model_reaches_the_data_and_forgets_the_noise():
    """The memoryless SDE of BridgeVelocity(exact drift, s = 0.5) with K = 200: X_1 ~ N(MU, SD^2) and corr(X_0, X_1) ≈ 0.
    n = 20000: s.e. 0.0057 (mean), 0.004 (std), 0.0071 (corr); tolerances: 5 s.e. plus the Euler bias at K = 200
    (the linear-FM test measures 0.02 on the std at K = 200 with the offset 1/K), i.e. 0.03 / 0.04 / 0.036."""
    s = 0.5
    v = BridgeVelocity(GaussianBridgeDrift(s), s)
    v.dim = 1
    prob = SOCProblem(base=v, ft=v, reward=lambda x: x[:, 0], dim=1, steps=200, schedule=MemorylessSchedule(1.0 / 200, bridge_sigma=s))
    tr = prob.rollout(20000, generator=torch.Generator().manual_seed(0))
    x1 = tr.xs[-1, :, 0]
    assert float(x1.mean()) == pytest.approx(MU, abs=0.03)
    assert float(x1.std()) == pytest.approx(SD, abs=0.04)
    assert abs(float(torch.corrcoef(torch.stack([tr.xs[0, :, 0], x1]))[0, 1])) < 0.036


def test_residual_velocity_starts_at_the_base_and_trains_only_the_residual():
    from agm.nets import TimeMLP

    base = TimeMLP(2, hidden=8, depth=1)
    ft = ResidualVelocity(base, TimeMLP(2, hidden=8, depth=2))
    x, t = torch.randn(5, 2), torch.rand(5)
    assert torch.equal(ft(x, t), base(x, t))
    ft(x, t).pow(2).sum().backward()
    assert all(p.grad is None for p in base.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in ft.delta.parameters())


def test_flat_field_runs_the_soc_losses_on_images():
    """An image model (B, 1, 4, 4) seen as flat vectors: every reward-gradient SOC loss gives a finite loss and a
    non-zero gradient for the fine-tuned copy (the image path of experiments/steering/soc_digits.py)."""
    class Conv(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, x, t):
            return self.c(x) * (1 + t.reshape(-1, 1, 1, 1))

    torch.manual_seed(0)
    base = FlatField(BridgeVelocity(Conv(), 0.5), (1, 4, 4))
    prob = make_problem(base, lambda x: -(x - 0.3).pow(2).sum(1), base.dim, steps=6,
                        schedule=MemorylessSchedule(1 / 6, bridge_sigma=0.5), time_subsampling="am")
    prob.ft.net.drift.c.weight.data.add_(0.05)  # ft != base: the log-variance loss is not identically 0
    for name in ("adjoint_matching", "log_variance", "cross_entropy", "relative_entropy"):
        prob.ft.zero_grad()
        per, _ = prob.loss(name, 8, generator=torch.Generator().manual_seed(1))
        assert per.shape == (8,) and torch.isfinite(per).all()
        per.mean().backward()
        g = prob.ft.net.drift.c.weight.grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name


def test_every_loss_has_a_default_learning_rate_and_the_recipe_uses_it():
    from agm.methods.steering.config import SteeringConfig
    from agm.methods.steering.run import SOC_RECIPE

    assert set(SOC_DEFAULT_LR) == set(SOC_LOSSES)
    cfg = SteeringConfig()
    for name in SOC_LOSSES:
        cfg.soc.loss = name
        assert SOC_RECIPE.lrs(cfg) == {"ft": SOC_DEFAULT_LR[name]}
    cfg.soc.lr = 0.123
    assert SOC_RECIPE.lrs(cfg) == {"ft": 0.123}


def test_default_learning_rates_are_the_sweep_s_best():
    """SOC_DEFAULT_LR is the per-loss lr with the lowest mean W2 in the committed sweep (docs/steering.md)."""
    import json
    from pathlib import Path

    res = json.loads((Path(__file__).resolve().parents[3] / "experiments/results/steering_soc_sweep.json").read_text())
    assert {k: res["summary"][k]["best_lr"] for k in SOC_LOSSES} == SOC_DEFAULT_LR
