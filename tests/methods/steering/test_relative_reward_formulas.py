"""Formulas of relative-reward extraction and steering (Nuti et al., arXiv 2306.01804) that the issue-14 review found
untested: each test names the single wrong formula it fails on. Fixture: Gaussian base N(m1, sd^2 I) and expert
N(m2, sd^2 I) under the linear-FM path, whose scores and relative reward are known in closed form."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from agm.methods.steering import GaussianFlowVelocity
from agm.methods.steering.relative_reward import FlowScore, RelativeRewardLoss, SteeredVelocity
from agm.nets import TimeMLP

M1, M2 = torch.tensor([0.3, -0.2]), torch.tensor([1.5, -1.0])


def _var(t, sd):
    return t**2 * sd**2 + (1 - t) ** 2


class ExactRho(nn.Module):
    """c(t) rho*(x, t) with rho* = t (m2 - m1)^T x / v_t for equal variances (sd = 1): grad rho* = s_e - s_b."""

    def __init__(self, scale=lambda t: torch.ones_like(t)):
        super().__init__()
        self.scale = scale

    def forward(self, x, t):
        return (self.scale(t) * t / _var(t, 1.0))[:, None] * (x * (M2 - M1)).sum(1, keepdim=True)


class Scaled(nn.Module):
    """c(t) rho(x, t) for a given net rho."""

    def __init__(self, net, scale):
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, x, t):
        return self.scale(t)[:, None] * self.net(x, t).reshape(-1, 1)


def _models(sd=1.0):
    return GaussianFlowVelocity(M1, sd), GaussianFlowVelocity(M2, sd)


@pytest.mark.parametrize("target", ["score", "eps", "velocity"])
def test_steering_divides_by_the_target_scale(target):
    """Kills 'steering without the division by c(t)'. A reward net fitted in target space T is c(t) rho*; steering
    with it at w = 1 must give exactly the expert's velocity v_b + eta_t grad rho* = v_e (O-C4), for every T.
    Without the division the eps / velocity cases are off by the factor c(t) = 1 - t or (1 - t)/t."""
    base_v, exp_v = _models()
    loss = RelativeRewardLoss(FlowScore(base_v), FlowScore(exp_v), target=target)
    field = SteeredVelocity(base_v, ExactRho(loss.scale), loss, scale=1.0, t_start=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 2, generator=g)
    t = 0.05 + 0.9 * torch.rand(256, generator=g)
    assert torch.allclose(field(x, t), exp_v(x, t), atol=1e-4)


def test_base_mean_input_is_the_gaussian_posterior_mean():
    """Kills 'a wrong posterior mean'. eval_at='base_mean' evaluates rho at E_b[x1 | x_t = x], which for base data
    N(m1, sd^2 I) on x_t = t x1 + (1 - t) x0 is m1 + t sd^2 / (t^2 sd^2 + (1 - t)^2) (x - t m1)."""
    sd = 0.7
    base_v, exp_v = _models(sd)
    loss = RelativeRewardLoss(FlowScore(base_v), FlowScore(exp_v), eval_at="base_mean")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 2, generator=g)
    t = 0.05 + 0.9 * torch.rand(128, generator=g)
    exact = M1 + (t * sd**2 / _var(t, sd))[:, None] * (x - t[:, None] * M1)
    assert torch.allclose(loss.reward_input(x, t), exact, atol=1e-4)
    assert torch.equal(RelativeRewardLoss(FlowScore(base_v), FlowScore(exp_v)).reward_input(x, t), x)


@pytest.mark.parametrize("target", ["eps", "velocity"])
def test_non_score_targets_keep_the_score_space_weighting(target):
    """Kills 'the weighting for non-score targets lost'. With weighting 'sigma2' the loss is sigma_t^2 |.|^2 in score
    units whatever the target space: for any net rho, the T-space loss of c(t) rho equals the score-space loss of rho
    sample by sample (the residual is c(t) times the score-space one, and the weight divides by c(t)^2). With
    weighting 'none' the T-space loss is c(t)^2 times the score-space one."""
    torch.manual_seed(0)
    base_v, exp_v = _models()
    net = TimeMLP(2, hidden=16, depth=2, out_dim=1)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(64, 2, generator=g)
    t = 0.05 + 0.9 * torch.rand(64, generator=g)
    for weighting in ("sigma2", "none"):
        score = RelativeRewardLoss(FlowScore(base_v), FlowScore(exp_v), target="score", weighting=weighting)
        other = RelativeRewardLoss(FlowScore(base_v), FlowScore(exp_v), target=target, weighting=weighting)
        ref = score(net, x, t).detach()
        got = other(Scaled(net, other.scale), x, t).detach()
        factor = torch.ones_like(t) if weighting == "sigma2" else other.scale(t) ** 2
        assert torch.allclose(got, factor * ref, rtol=1e-4, atol=1e-7), weighting
