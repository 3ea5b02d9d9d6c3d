"""Ground-truth tests for relative reward extraction (arXiv 2306.01804 oracles)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from agm.errors import ConfigError, DataError
from agm.nets import TimeMLP
from agm.methods.steering.relative_reward import FlowScore, RelativeRewardLoss, reward_gradient, steer_sample, train_relative_reward
from agm.methods.steering import GaussianFlowVelocity, EmpiricalFlowVelocity


def fm_var(t: torch.Tensor, sd: float) -> torch.Tensor:
    """Variance of the linear-FM marginal for data N(m, sd^2): t^2 sd^2 + (1 - t)^2."""
    return t**2 * sd**2 + (1 - t) ** 2


def test_flow_score_and_target_scales_match_closed_forms():
    """O-C3: analytic scores in every target space (arXiv 2306.01804), no clipping."""
    torch.manual_seed(0)
    m1, m2, sd = torch.tensor([0.3, -0.2]), torch.tensor([1.0, 0.5]), 0.7
    base, expert = FlowScore(GaussianFlowVelocity(m1, sd)), FlowScore(GaussianFlowVelocity(m2, sd))
    x = torch.randn(64, 2)
    t = torch.rand(64) * 0.9 + 0.05
    v = fm_var(t, sd)[:, None]
    s_exact = -(x - t[:, None] * m1) / v
    assert torch.allclose(base.score(x, t), s_exact, atol=1e-4)
    ds = -(x - t[:, None] * m2) / v - s_exact
    for target, fac in (("score", torch.ones_like(t)), ("eps", 1 - t), ("velocity", (1 - t) / t)):
        loss = RelativeRewardLoss(base, expert, target=target)
        assert torch.allclose(loss.regression_target(x, t), ds * fac[:, None], atol=1e-4), target
    # the velocity target is literally v_e - v_b
    vel = RelativeRewardLoss(base, expert, target="velocity").regression_target(x, t)
    assert torch.allclose(vel, expert.velocity(x, t) - base.velocity(x, t), atol=1e-4)


class _Rotated:
    """Expert score = base score + const shift + J x (J antisymmetric): the J x part is L2(p_t)-orthogonal
    to gradients under an isotropic centred p_t (O-C5), so the learned grad rho must ignore it."""

    def __init__(self, base: FlowScore, shift: torch.Tensor) -> None:
        self.base, self.shift = base, shift
        self.J = torch.tensor([[0.0, 1.0], [-1.0, 0.0]])

    def alpha(self, t):
        return t

    def sigma(self, t):
        return 1 - t

    def eta(self, t):
        return (1 - t) / t

    def score(self, x, t):
        return self.base.score(x, t) + t[:, None] * self.shift + 0.8 * x @ self.J.T


def test_learned_gradient_matches_constant_score_difference_and_ignores_rotation():
    """O-C1 (equal variances: grad rho* is constant in x) + O-C5 (projection removes J x)."""
    torch.manual_seed(0)
    base = FlowScore(GaussianFlowVelocity([0.0, 0.0], 1.0))
    shift = torch.tensor([1.0, -0.5])
    expert = _Rotated(base, shift)
    net = TimeMLP(2, hidden=32, depth=2, out_dim=1)
    loss = RelativeRewardLoss(base, expert, target="score", weighting="none")
    data = torch.randn(4000, 2)  # base data N(0, I): p_t is N(0, I) for every t (isotropic, centred)
    train_relative_reward(net, loss, data, steps=400, batch=256, lr=3e-3, t_min=0.2, t_max=0.8, seed=0)
    x = torch.randn(500, 2)
    for tv in (0.3, 0.5, 0.7):
        t = torch.full((500,), tv)
        g = reward_gradient(net, x, t)
        # exact projection: tv * shift; the rotation (norm 0.8 |x| ~ 1.0) must be absent.
        err = (g - tv * shift).norm(dim=1).mean()
        assert err < 0.12, (tv, float(err))


def test_empirical_log_tilt_recovers_reward_at_data_end_and_is_constant_at_noise_end():
    """§C.2: rho*(x, t) = log E[e^{r(x1)} | x_t = x] -> r(x) + C at t -> 1 and -> log E[e^r] (constant) at t = 0."""
    torch.manual_seed(0)
    data = torch.randn(300, 2)
    r = data[:, 0] * 1.5
    emp = EmpiricalFlowVelocity(data, t_max=1 - 1e-4)
    x = data[:20]
    near1 = emp.log_tilt(x, torch.full((20,), 0.9999), r)
    assert torch.allclose(near1, r[:20], atol=1e-3)
    at0 = emp.log_tilt(torch.randn(20, 2), torch.zeros(20), r)
    assert torch.allclose(at0, torch.logsumexp(r, 0).expand(20) - math.log(300), atol=1e-5)


class _ExactRho(nn.Module):
    """rho*(x, t) for base N(m1, I) and expert N(m2, I) under the FM path (O-C1, sd = 1): with equal
    variances v_t, rho* = t (m2 - m1)^T x / v_t + C(t)."""

    def __init__(self, m1, m2):
        super().__init__()
        self.d = torch.as_tensor(m2) - torch.as_tensor(m1)

    def forward(self, x, t):
        return (t / fm_var(t, 1.0))[:, None] * (x * self.d).sum(1, keepdim=True)


def test_steering_with_exact_reward_reproduces_expert():
    """O-C4: steered base with exact rho* and w = 1 gives the expert's mean and covariance.
    n = 6000 samples, unit variance: s.e. of a mean 1/sqrt(6000) = 0.013, of a variance sqrt(2/6000) = 0.018;
    tolerance 0.07 = 5 s.e. + ODE discretisation (100 Heun steps)."""
    m1, m2 = torch.tensor([0.0, 0.0]), torch.tensor([1.5, -1.0])
    base_v = GaussianFlowVelocity(m1, 1.0)
    loss = RelativeRewardLoss(FlowScore(base_v), FlowScore(GaussianFlowVelocity(m2, 1.0)))
    s = steer_sample(base_v, _ExactRho(m1, m2), loss, 6000, 2, scale=1.0, t_start=1e-3, seed=0)
    assert torch.allclose(s.mean(0), m2, atol=0.07)
    assert torch.allclose(torch.cov(s.T), torch.eye(2), atol=0.07)
    s0 = steer_sample(base_v, _ExactRho(m1, m2), loss, 6000, 2, scale=0.0, seed=0)
    assert torch.allclose(s0.mean(0), m1, atol=0.07)


def test_relative_reward_bad_input():
    b2 = FlowScore(GaussianFlowVelocity([0.0, 0.0], 1.0))
    b3 = FlowScore(GaussianFlowVelocity([0.0, 0.0, 0.0], 1.0))
    with pytest.raises(ConfigError, match="data dimension"):
        RelativeRewardLoss(b2, b3)
    with pytest.raises(ConfigError, match="relative_reward.target"):
        RelativeRewardLoss(b2, b2, target="scores")
    with pytest.raises(ConfigError, match="relative_reward.weighting"):
        RelativeRewardLoss(b2, b2, weighting="sigma")
    loss = RelativeRewardLoss(b2, b2)
    net = TimeMLP(2, hidden=8, depth=1, out_dim=1)
    with pytest.raises(DataError, match="finite"):
        train_relative_reward(net, loss, torch.tensor([[0.0, float("nan")]]), steps=1)
    with pytest.raises(ConfigError, match=r"data dimension 3 .*base model's data dimension 2"):
        train_relative_reward(net, loss, torch.zeros(10, 3), steps=1)
    with pytest.raises(ConfigError, match="steps"):
        train_relative_reward(net, loss, torch.zeros(10, 2), steps=0)
