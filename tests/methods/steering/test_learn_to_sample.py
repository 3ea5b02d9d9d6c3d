"""Ground-truth tests for learning to sample by inverse RL (arXiv 2602.08689, oracles B.7)."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from agm.errors import ConfigError, DataError
from agm.methods.steering.learn_to_sample import (
    Discriminator,
    FlowSamplerMDP,
    IRLConfig,
    SamplerPolicy,
    c_f,
    discriminator_loss,
    schedule_from_policy,
    train_sampler_policy,
)
from agm.samplers import ODESampler
from agm.methods.steering import GaussianFlowVelocity


@pytest.mark.parametrize("div,lam,expected", [("reverse_kl", 1.0, 0.8), ("forward_kl", 1.0, 0.47337), ("pr", 2.0, 0.26734)])
def test_policy_gradient_identity_matches_finite_differences(div, lam, expected):
    """O-B1: p^E = N(0, 1), p^theta = N(theta, 1.3^2), theta = 0.8: E_theta[d/dtheta log p^theta(x) c_f(r(x))] with the
    exact ratio r = p^E/p^theta equals dD_f/dtheta (values from finite differences). Tolerance: 5 s.e. of the
    Monte-Carlo mean (sample std / sqrt(n), n = 400000)."""
    g = torch.Generator().manual_seed(0)
    th, s = 0.8, 1.3
    x = (th + s * torch.randn(400000, generator=g, dtype=torch.float64))
    logr = (-0.5 * x**2) - (-0.5 * ((x - th) / s) ** 2 - math.log(s))
    vals = (x - th) / s**2 * c_f(logr.exp(), div, pr_lambda=lam)
    se = float(vals.std() / math.sqrt(len(vals)))
    assert float(vals.mean()) == pytest.approx(expected, abs=5 * se + 1e-4)


def test_discriminator_learns_log_density_ratio():
    """O-B2: expert N(0, 1) vs sampler N(mu, 1), mu = 1: the logistic optimum is d*(x) = mu^2/2 - mu x.
    Checked on x in [-1, 2] (where both laws have mass) to 0.2 after 300 Adam steps on 256 + 256 points."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    disc = Discriminator(1, hidden=32, depth=2)
    opt = torch.optim.Adam(disc.parameters(), lr=5e-3)
    t = torch.full((256,), 0.5)
    for _ in range(300):
        xe = torch.randn(256, 1, generator=g)
        xm = 1.0 + torch.randn(256, 1, generator=g)
        loss = discriminator_loss(disc, xe, t, xm, t)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.linspace(-1, 2, 31)[:, None]
    with torch.no_grad():
        d = disc(x, torch.full((31,), 0.5))
    assert torch.allclose(d, 0.5 - x[:, 0], atol=0.2), (d - (0.5 - x[:, 0])).abs().max()


@pytest.mark.parametrize("family", ["step", "churn", "scale"])
def test_identity_actions_reproduce_the_default_euler_sampler(family):
    """Every family's identity action (c = 1, gamma = 0, lambda = 1) is the plain uniform-grid Euler sampler."""
    vel = GaussianFlowVelocity([0.5, -1.0], 0.7)
    mdp = FlowSamplerMDP(vel, 2, 6, family=family)
    pol = SamplerPolicy(6, mdp.n_actions)
    ro = mdp.rollout(pol, 64, generator=torch.Generator().manual_seed(0), actions=torch.full((6,), mdp.identity_action))
    ref = ODESampler(steps=6, method="euler").sample(vel, ro.xs[0])
    assert torch.allclose(ro.xs[-1], ref, atol=1e-5)
    assert torch.allclose(ro.ts[-1], torch.ones(64))


def test_churn_keeps_the_exact_marginal():
    """EDM churn in the VE coordinates (arXiv 2602.08689): if x ~ p_t (exact FM marginal of N(0, s^2)), the churned
    x_hat ~ p_{t_hat}. With an exact velocity the step from t_hat then lands close to p_{t_next}; we check the
    variance of the final state after a single churned Euler step against Euler from the exact p_{t_hat}.
    n = 100000: relative s.e. of a variance sqrt(2/n) = 0.0045; tolerance 0.03."""
    s = 1.5
    vel = GaussianFlowVelocity([0.0], s)
    mdp = FlowSamplerMDP(vel, 1, 4, family="churn", values=(0.0, 1.0))
    g = torch.Generator().manual_seed(0)
    t = torch.full((100000,), 0.25)
    x = torch.randn(100000, 1, generator=g) * math.sqrt(0.25**2 * s**2 + 0.75**2)
    x1, t1 = mdp.step(x, t, 1, torch.ones(100000, dtype=torch.long), generator=g)
    sig = 0.75 / 0.25 * 2.0
    t_hat = 1 / (1 + sig)
    var_hat = t_hat**2 * s**2 + (1 - t_hat) ** 2
    c = (t_hat * s**2 - (1 - t_hat)) / var_hat  # exact velocity slope at t_hat
    expected = var_hat * (1 + (float(t1[0]) - t_hat) * c) ** 2
    assert float(x1.var()) == pytest.approx(expected, rel=0.03)


def test_irl_policy_corrects_a_misspecified_denoiser():
    """O-B3 analogue in agm's FM coordinates: data N(0, 1), frozen velocity exact for N(0, 2^2), action = score scale
    lambda per step (v_lambda = x/t + lambda (v - x/t)), N = 5 Euler steps. Every step is linear in x, so the final
    std is a product and the exact reverse KL of every schedule is known; brute force over all 7^5 schedules gives
    the optimum (KL ~ 0) and the identity schedule has KL 0.20. The IRL policy (final-level reverse KL, no reward)
    must cut the identity's KL by at least 4x (measured 0.001-0.012 over seeds with 150 iterations)."""
    vel = GaussianFlowVelocity([0.0], 2.0)
    vals = (0.8, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4)
    n = 5
    mdp = FlowSamplerMDP(vel, 1, n, family="scale", values=vals)

    # per-step gain x_{k+1} = gain[k, a] x_k for every action (the time grid does not depend on the action)
    na = len(vals)
    gain = torch.stack([mdp.step(torch.ones(na, 1), torch.full((na,), k / n), k, torch.arange(na))[0][:, 0] for k in range(n)])

    def kl_sd(sd: torch.Tensor) -> torch.Tensor:
        return 0.5 * (sd * sd - 1) - torch.log(sd.abs())

    def kl(acts) -> float:
        return float(kl_sd(torch.stack([gain[k, a] for k, a in enumerate(acts)]).prod()))

    combos = torch.tensor(list(itertools.product(range(na), repeat=n)))  # all 7^5 schedules
    best = float(kl_sd(gain[torch.arange(n), combos].prod(1)).min())
    ident = kl([mdp.identity_action] * n)
    assert best < 1e-3 < 0.15 < ident
    torch.manual_seed(0)
    pol = SamplerPolicy(n, mdp.n_actions, identity_action=mdp.identity_action)
    data = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0))
    train_sampler_policy(mdp, pol, data, IRLConfig(iterations=120, batch=256, level_weights="final", seed=1))
    learned = kl(schedule_from_policy(pol))
    assert learned < 0.25 * ident, (learned, ident)


def test_learn_to_sample_bad_input():
    vel = GaussianFlowVelocity([0.0, 0.0], 1.0)
    mdp = FlowSamplerMDP(vel, 2, 4)
    with pytest.raises(ConfigError, match="policy horizon=5 does not match the sampler's horizon=4"):
        train_sampler_policy(mdp, SamplerPolicy(5, mdp.n_actions), torch.zeros(10, 2), IRLConfig(iterations=1))
    with pytest.raises(ConfigError, match="n_actions"):
        mdp.rollout(SamplerPolicy(4, 3), 2)
    with pytest.raises(DataError, match=r"expected \(N, 2\)"):
        train_sampler_policy(mdp, SamplerPolicy(4, mdp.n_actions), torch.zeros(10, 3), IRLConfig(iterations=1))
    with pytest.raises(ConfigError, match="identity action 1.0"):
        FlowSamplerMDP(vel, 2, 4, family="step", values=(0.5, 2.0))
    with pytest.raises(ConfigError, match="action_family"):
        FlowSamplerMDP(vel, 2, 4, family="steps")
    with pytest.raises(ConfigError, match="divergence"):
        IRLConfig(divergence="kl")
    with pytest.raises(ConfigError, match="horizon"):
        FlowSamplerMDP(vel, 2, 0)
