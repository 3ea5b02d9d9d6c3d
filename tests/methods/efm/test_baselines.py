"""IQL and TD3+BC (agm.methods.efm.baselines) on tiny exact cases: the expectile loss's minimiser, IQL's value and
AWR policy on a two-action bandit, TD3+BC's actor fixed point on a one-step bandit, and gradient isolation."""
from __future__ import annotations

import math

import pytest
import torch
from scipy.optimize import brentq, minimize_scalar

from agm.data.offline import OfflineDataset
from agm.errors import ConfigError
from agm.methods.efm.baselines import (
    IQL,
    TD3BC,
    BaselineConfig,
    expectile_loss,
    make_baseline,
    make_baseline_trainer,
    td3bc_actor_loss,
)


def _bandit(actions, rewards):
    n = actions.shape[0]
    obs = torch.zeros(n, 1)
    return OfflineDataset(observations=obs, actions=actions, rewards=rewards, next_observations=obs,
                          terminals=torch.ones(n, dtype=torch.bool), timeouts=torch.zeros(n, dtype=torch.bool))


@pytest.mark.parametrize("tau", [0.5, 0.7, 0.9])
def test_expectile_loss_minimiser_is_the_expectile(tau):
    """X in {0, 1} with P(X = 1) = p: the tau-expectile e solves tau p (1 - e) = (1 - tau)(1 - p) e, i.e.
    e = tau p / (tau p + (1 - tau)(1 - p)) (the mean p at tau = 0.5). The population loss is exact here."""
    p = 0.3

    def pop_loss(v):
        v = torch.tensor(v, dtype=torch.float64)
        return float(p * expectile_loss(1 - v, tau) + (1 - p) * expectile_loss(0 - v, tau))

    e = minimize_scalar(pop_loss, bounds=(0, 1), method="bounded", options={"xatol": 1e-10}).x
    assert abs(e - tau * p / (tau * p + (1 - tau) * (1 - p))) < 1e-7


def test_iql_value_is_the_expectile_and_awr_policy_the_weighted_mean():
    """One state, one-step episodes, actions +-0.5 with P(+0.5) = 0.3, reward 10 a (x reward_scale 0.1: Q = a).
    Exact: Q(+-0.5) = +-0.5; V = the 0.7-expectile of Q under the data = 0 (formula of the test above, shifted);
    AWR's Gaussian mean = sum w a / sum w with w = exp(3 (Q - V)): (0.3 e^1.5 0.5 - 0.7 e^-1.5 0.5) / (0.3 e^1.5 +
    0.7 e^-1.5) = 0.396. The data mean is -0.2, so both checks fail by > 0.2 without expectile / weighting.
    Tolerance 0.04: 1000 Trainer steps of batch 64; the sampling noise of the batch proportions is averaged by
    Adam over many steps (measured error < 0.015)."""
    g = torch.Generator().manual_seed(0)
    a = torch.where(torch.rand(4000, 1, generator=g) < 0.3, 0.5, -0.5)
    algo = IQL(_bandit(a, 10 * a[:, 0]), BaselineConfig(hidden=32, depth=2), [-1.0], [1.0], seed=0)
    make_baseline_trainer(algo, steps=1000, lr=1e-3, tau=0.05, batch_size=64).fit()
    obs = torch.zeros(1, 1)
    with torch.no_grad():
        q = algo.q.min_q(torch.zeros(2, 1), torch.tensor([[0.5], [-0.5]]))
        v, mean = float(algo.v(obs)[0]), float(algo.actor(obs)[0, 0])
    assert torch.allclose(q, torch.tensor([0.5, -0.5]), atol=0.03), q
    assert abs(v - 0.0) < 0.04, v
    w_hi, w_lo = 0.3 * math.exp(1.5), 0.7 * math.exp(-1.5)
    assert abs(mean - (w_hi * 0.5 - w_lo * 0.5) / (w_hi + w_lo)) < 0.04, mean


def _td3bc_root(alpha, a_bar):
    """Fixed point of TD3+BC's actor on Q(a) = 10 - (a - 0.5)^2: -lambda Q'(pi) + 2 (pi - a_bar) = 0 with
    lambda = alpha / Q(pi), i.e. alpha (pi - 0.5) / Q(pi) + pi - a_bar = 0."""
    return brentq(lambda x: alpha * (x - 0.5) / (10 - (x - 0.5) ** 2) + x - a_bar, -1, 1)


def test_td3bc_actor_loss_fixed_point():
    """Iterating the actor loss (lambda recomputed, no gradient, every step) on a scalar action converges to the
    analytic fixed point (exact up to the optimiser's tolerance)."""
    acts = torch.linspace(-1, 1, 101)[:, None]  # mean 0
    pi = torch.zeros(1, 1, requires_grad=True)
    opt = torch.optim.Adam([pi], lr=1e-2)
    for _ in range(800):
        loss, _ = td3bc_actor_loss(10 - (pi[:, 0] - 0.5) ** 2, pi.expand(101, 1), acts, 2.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
    root = _td3bc_root(2.5, 0.0)
    assert abs(float(pi.detach()) - root) < 1e-3, (float(pi.detach()), root)
    assert 0.05 < root < 0.15  # between the data mean 0 and the Q maximiser 0.5


def test_td3bc_on_one_step_bandit_reaches_the_fixed_point():
    """The whole TD3+BC (learned critic, tanh actor, one Trainer) on a one-step bandit with reward 10 + 2a and uniform
    data actions (mean a_bar): the actor's fixed point solves pi = a_bar + alpha / Q(pi), i.e.
    2 pi^2 + (10 - 2 a_bar) pi - 10 a_bar - alpha = 0 (pi = 0.22), not the data mean (0) nor the greedy action (1).
    Tolerance 0.05 (learned critic; measured error < 0.025 on two data seeds at this budget)."""
    g = torch.Generator().manual_seed(1)
    a = torch.rand(4000, 1, generator=g) * 2 - 1
    cfg = BaselineConfig(hidden=32, depth=2, reward_scale=1.0)
    algo = TD3BC(_bandit(a, 10 + 2 * a[:, 0]), cfg, [-1.0], [1.0], seed=0)
    make_baseline_trainer(algo, steps=800, lr=1e-3, tau=0.05, batch_size=64).fit()
    pi = float(algo.act(torch.zeros(1, 1))[0, 0])
    ab = float(a.mean())
    root = (-(10 - 2 * ab) + math.sqrt((10 - 2 * ab) ** 2 + 8 * (10 * ab + 2.5))) / 4
    assert 0.2 < root < 0.25
    assert abs(pi - root) < 0.05, (pi, root)


def test_td3bc_actor_term_leaves_the_critic_gradient_alone():
    """On an actor step the loss is critic loss + actor loss, but the critic's gradient must be the critic loss's only."""
    g = torch.Generator().manual_seed(2)
    a = torch.rand(64, 1, generator=g) * 2 - 1
    data = _bandit(a, a[:, 0])
    data.observations = data.next_observations = torch.randn(64, 1, generator=g)
    algo = TD3BC(data, BaselineConfig(hidden=16, depth=1), [-1.0], [1.0], seed=0)
    trainer = make_baseline_trainer(algo, steps=1)
    batch = algo.batch(0, torch.Generator().manual_seed(3))
    loss, logs = algo.loss(batch, 0, torch.Generator().manual_seed(4))
    assert "actor_loss" in logs
    loss.backward()
    full = [p.grad.clone() for p in algo.critic.parameters()]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in algo.actor.parameters())
    for p in [*algo.critic.parameters(), *algo.actor.parameters()]:
        p.grad = None
    loss2, logs2 = algo.loss(batch, 1, torch.Generator().manual_seed(4))  # step 1: critic only (policy_freq 2)
    assert "actor_loss" not in logs2
    loss2.backward()
    for f, p in zip(full, algo.critic.parameters()):
        torch.testing.assert_close(f, p.grad)
    del trainer


def test_baseline_bad_input():
    a = torch.zeros(8, 1)
    with pytest.raises(ConfigError, match="accepted: 'iql', 'td3bc'"):
        make_baseline("cql", _bandit(a, a[:, 0]), BaselineConfig(), [-1.0], [1.0])
    with pytest.raises(ConfigError, match="expectile"):
        BaselineConfig(expectile=1.0).validate()
    with pytest.raises(ConfigError, match="tau"):
        make_baseline_trainer(IQL(_bandit(a, a[:, 0]), BaselineConfig(hidden=8, depth=1), [-1.0], [1.0]), steps=1, tau=0.0)
