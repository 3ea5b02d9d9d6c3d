"""QIPO (arXiv 2503.04975 section 5, Algorithm 2) against closed forms: the support softmax limit, the iterated
tilt of a Gaussian bandit, the softmax Q-learning fixed point; best-of-N, the support set, Q kept training
(issue 14), and bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from agm.errors import ConfigError, DataError
from agm.methods.efm import QIPO, OfflineDataset, QIPOConfig, SoftmaxQLearner, TwinQ, evaluate_policy, fit_qipo, qipo_policy_loss
from agm.methods.efm.policy import FlowPolicy, Normalizer


def _bandit_data(n, obs_dim=1, mean=0.0, std=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    obs = torch.zeros(n, obs_dim)
    acts = (mean + std * torch.randn(n, 1, generator=g)).clamp(-1, 1)
    return OfflineDataset(observations=obs, actions=acts, rewards=torch.zeros(n), next_observations=obs,
                          terminals=torch.ones(n, dtype=torch.bool), timeouts=torch.zeros(n, dtype=torch.bool))


def test_policy_loss_weights_oracles():
    """beta = 0 or a state-constant Q gives g_ij = 1/K; the loss is then the plain mean over all actions."""
    torch.manual_seed(0)
    pol = FlowPolicy(2, 1, Normalizer(torch.zeros(2), torch.ones(2)), hidden=16, depth=1)
    obs, acts = torch.randn(5, 2), torch.rand(5, 4, 1) * 2 - 1
    q = torch.randn(5, 4)
    for beta, qv in ((0.0, q), (3.0, q[:, :1].expand(5, 4))):
        loss, g = qipo_policy_loss(pol, obs, acts, qv, beta, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(g, torch.full((5, 4), 0.25))
        per = pol.per_sample_loss(obs.repeat_interleave(4, 0), acts.reshape(20, 1), generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(loss, per.mean())
    _, g = qipo_policy_loss(pol, obs, acts, q, 2.0)
    torch.testing.assert_close(g, torch.softmax(2.0 * q, 1))
    # dataset-action-only variant: K g_i0 l_i0
    loss, g = qipo_policy_loss(pol, obs, acts, q, 2.0, weight_all_actions=False, generator=torch.Generator().manual_seed(2))
    per0 = pol.per_sample_loss(obs, acts[:, 0], generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(loss, (4 * g[:, 0] * per0).mean())


def test_support_softmax_limit_is_normalised_boltzmann_weight():
    """Support from mu = N(0, 1), Q = c a: (M+1) g_0 -> exp(beta c a_0) / E_mu exp(beta c a) = exp(beta c a_0 - (beta c)^2 / 2).

    With M = 200,000 the denominator is a Monte-Carlo mean of lognormal variables with relative SE
    sqrt((exp((beta c)^2) - 1) / M) = 0.0017 for beta c = 0.8; we allow 5 SE."""
    from agm.methods.efm.efm import grouped_softmax

    g = torch.Generator().manual_seed(0)
    beta, c, M = 2.0, 0.4, 200_000
    a = torch.cat([torch.tensor([0.7]), torch.randn(M, generator=g)]).double()
    w = grouped_softmax((beta * c * a)[None])[0]
    exact = math.exp(beta * c * 0.7 - (beta * c) ** 2 / 2)
    rel_se = math.sqrt((math.exp((beta * c) ** 2) - 1) / M)
    assert abs(float((M + 1) * w[0]) / exact - 1) < 5 * rel_se


def test_qipo_iterated_tilt_on_gaussian_bandit():
    """mu = N(m, s^2), exact Q = c a, support only from pi_{l-1} (dataset action excluded): after l renewals
    pi_l = N(m + l beta c s^2, s^2).

    Tolerance: the final law is checked with n = 4000 policy samples, SE(mean) = s / sqrt(n) = 0.0047 and
    SE(sd) = s / sqrt(2 n) = 0.0034; each renewal also fits a self-normalised weighted sample of 2048 x 32 support
    actions (ESS ~ 6e4, negligible) with a small network at a constant learning rate; we allow 4 SE + 0.05 for
    fit / ODE / clipping error (measured during development: mean error 0.02-0.03, sd shrinks ~0.01-0.02 per refit
    with Heun; Euler with 20 steps shrinks the sd by ~10% per fit, hence Heun here). Clipping at +-1 is 2.4 sd from
    the final mean (< 1% of the mass). The shift under test is 2 x 0.135 = 0.27, so one missing renewal fails."""
    m, s, beta, c, L = 0.0, 0.3, 1.0, 1.5, 2
    data = _bandit_data(2048, mean=m, std=s)
    cfg = _cfg(beta=beta, support_size=32, behaviour_steps=1000, q_steps=0, improve_steps=L * 500, renew_every=500,
               improve_batch_size=32, policy_hidden=64, policy_depth=2, sampler_steps=20, sampler_method="heun",
               include_dataset_action=False, support_states=None, freeze_q=True, lr=3e-3)
    algo = QIPO(data, cfg, [-1.0], [1.0], seed=0, q_fn=lambda o, a: c * a[:, 0])
    trainer = fit_qipo(algo, cfg.phase_ends[0])
    logs = trainer.fit()
    x = algo.policy.sample(torch.zeros(4000, 1), 1, generator=torch.Generator().manual_seed(5))[:, 0, 0].double()
    mean_t = m + L * beta * c * s**2
    n = x.shape[0]
    assert abs(float(x.mean()) - mean_t) < 4 * s / math.sqrt(n) + 0.05, (float(x.mean()), mean_t)
    assert abs(float(x.std()) - s) < 4 * s / math.sqrt(2 * n) + 0.05, float(x.std())
    # the per-state ESS of the softmax weights is logged in phase 3
    ess = [r["per_state_ess"] for r in logs if "per_state_ess" in r]
    assert ess and all(1.0 <= e <= 32.0 for e in ess)


def test_softmax_q_learning_fixed_point():
    """Self-loop with reward 1, never terminal: Q(s, a) = 1 / (1 - gamma) for every action and every beta_Q
    (the softmax-weighted average of equal values). gamma = 0.5 -> Q = 2; a few hundred Trainer steps reach it
    to 5% (the target network is the Trainer's EMA of Q with decay 1 - tau, tau = 0.1)."""
    from agm.training import Trainer
    from agm.training.config import TrainConfig

    torch.manual_seed(0)
    n = 512
    obs = torch.randn(n, 2)
    acts = torch.rand(n, 1) * 2 - 1
    q = TwinQ(2, 1, Normalizer.fit(obs), hidden=32, depth=2)
    learner = SoftmaxQLearner(q, gamma=0.5, beta_q=3.0)

    def batches(step, g):
        idx = torch.randint(0, n, (128,), generator=g)
        return {"obs": obs[idx], "act": acts[idx], "rew": torch.ones(128), "next_obs": obs[idx],
                "term": torch.zeros(128, dtype=torch.bool), "next_support": torch.rand(128, 4, 1, generator=g) * 2 - 1}

    trainer = Trainer(learner, batches, TrainConfig(steps=600, lr=3e-3, grad_clip=0.0, ema_decay=0.9, progress=False,
                                                     tensorboard=False, device="cpu"), seed=0)
    learner.bind(trainer)
    trainer.fit()
    with torch.no_grad():
        val = q(obs, acts)
    assert float((val - 2.0).abs().max()) < 0.1, float((val - 2.0).abs().max())
    # the target formula itself: terminal transitions bootstrap nothing
    y = learner.target(torch.tensor([0.3]), obs[:1], torch.tensor([True]), torch.zeros(1, 4, 1))
    torch.testing.assert_close(y, torch.tensor([0.3]))


def test_fixed_q_fn_needs_frozen_q():
    """A given Q function (q_fn, q_steps=0) has no network to train in phase 3: freeze_q=False is refused when QIPO is
    built, with a ConfigError naming freeze_q and its accepted value (not deep inside phase 3 at the first Q step)."""
    data = _bandit_data(16)
    with pytest.raises(ConfigError, match=r"freeze_q=False .*accepted values: freeze_q=True"):
        QIPO(data, QIPOConfig(policy_hidden=8, policy_depth=1, q_steps=0), [-1.0], [1.0], q_fn=lambda o, a: a[:, 0])
    # the same with the flag set explicitly, and the learned-Q case with freeze_q=False stays accepted
    with pytest.raises(ConfigError, match="freeze_q"):
        QIPO(data, QIPOConfig(policy_hidden=8, policy_depth=1, q_steps=0, freeze_q=False), [-1.0], [1.0],
             q_fn=lambda o, a: a[:, 0])
    assert QIPO(data, QIPOConfig(policy_hidden=8, policy_depth=1, q_hidden=8, q_depth=1, q_steps=0, freeze_q=False),
                [-1.0], [1.0]).q is not None


def test_qipo_bad_input():
    with pytest.raises(ConfigError, match="beta"):
        QIPOConfig(beta=-1.0)
    with pytest.raises(ConfigError, match="support_size"):
        QIPOConfig(support_size=0)
    with pytest.raises(ConfigError, match="gamma"):
        SoftmaxQLearner(TwinQ(1, 1, Normalizer(torch.zeros(1), torch.ones(1)), hidden=8, depth=1), gamma=1.0)
    data = _bandit_data(16)
    with pytest.raises(DataError, match="action bounds"):
        QIPO(data, QIPOConfig(), [-1.0, -1.0], [1.0, 1.0])
    with pytest.raises(ConfigError, match="q_steps"):
        QIPO(data, QIPOConfig(policy_hidden=8, policy_depth=1, freeze_q=True), [-1.0], [1.0], q_fn=lambda o, a: a[:, 0])
    algo = QIPO(data, QIPOConfig(policy_hidden=8, policy_depth=1, q_steps=0, freeze_q=True), [-1.0], [1.0],
                q_fn=lambda o, a: a[:, 0])
    with pytest.raises(DataError, match=r"observation has shape \(2, 3\); accepted: \(B, 1\)"):
        algo.act(np.zeros((2, 3)))
    with pytest.raises(DataError, match="policy returned actions of shape"):
        evaluate_policy(lambda o: np.zeros((o.shape[0], 2)), "Pendulum-v1", episodes=1)
    with pytest.raises(DataError, match="shapes obs"):
        qipo_policy_loss(algo.policy, torch.zeros(2, 1), torch.zeros(2, 3), torch.zeros(2, 3), 1.0)
    with pytest.raises(DataError, match="non-finite"):
        qipo_policy_loss(algo.policy, torch.zeros(2, 1), torch.zeros(2, 3, 1), torch.tensor([[0.0, float("nan"), 1.0]] * 2), 1.0)


def _cfg(lr=None, **kw):
    cfg = QIPOConfig(**kw)
    cfg.train.progress = False
    if lr is not None:
        cfg.train.lr = lr
    return cfg.validate()


def test_act_returns_environment_actions():
    data = _bandit_data(64)
    algo = QIPO(data, _cfg(policy_hidden=8, policy_depth=1, q_steps=0, freeze_q=True), [-2.0], [2.0], q_fn=lambda o, a: a[:, 0])
    a = algo.act(np.zeros((5, 1)))
    assert a.shape == (5, 1) and (np.abs(a) <= 2.0).all()


def test_best_of_n_picks_the_highest_q_action():
    """Best-of-N by Q (issue 14): with Q(s, a) = -(a - 0.3)^2 the chosen action is, among the N policy samples drawn
    with the same generator state, the one closest to 0.3 (not the worst, not the first)."""
    data = _bandit_data(64, std=0.6)
    algo = QIPO(data, _cfg(policy_hidden=8, policy_depth=1, q_steps=0, freeze_q=True), [-2.0], [2.0],
                q_fn=lambda o, a: -(a[:, 0] - 0.3) ** 2)
    obs = np.zeros((6, 1))
    algo.gen.manual_seed(11)
    got = algo.act(obs, best_of=16)
    algo.gen.manual_seed(11)
    cand = algo.scaler.unnormalize(algo.policy.sample(torch.zeros(6, 1), 16, generator=algo.gen)).numpy()[..., 0]  # (6, 16)
    want = cand[np.arange(6), np.abs(cand - 0.6).argmin(1)]  # 0.3 normalised to [-1, 1] is 0.6 on the [-2, 2] box
    np.testing.assert_allclose(got[:, 0], want, rtol=0, atol=1e-6)
    assert np.ptp(cand, axis=1).min() > 0  # the candidates differ, so a wrong pick would be seen


@pytest.mark.parametrize("include", [True, False])
def test_support_set_holds_the_dataset_action(include):
    """include_dataset_action (the paper's support set, issue 14): column 0 of every renewed support row is the
    data set's own (normalised) action of that state; without it, no column equals it."""
    data = _bandit_data(40, std=0.5)
    cfg = _cfg(policy_hidden=8, policy_depth=1, q_steps=0, support_size=3, support_states=16, include_dataset_action=include,
               freeze_q=True)  # the frozen-Q table stores each candidate's Q value
    algo = QIPO(data, cfg, [-1.0], [1.0], q_fn=lambda o, a: a[:, 0])
    algo.renew_support(torch.Generator().manual_seed(0))
    t = algo.tables
    assert t.support.shape == (16, 3 + int(include), 1)
    own = algo.actions[t.support_idx]
    if include:
        torch.testing.assert_close(t.support[:, 0], own)
        torch.testing.assert_close(t.support_q, t.support[..., 0])  # Q = a of every column, dataset action included
    else:
        assert not torch.isclose(t.support, own[:, None]).all(-1).any()


def test_q_kept_training_renews_next_support_once_and_weights_with_current_q(monkeypatch):
    """freeze_q=False (issue 14): phase 3 draws policy samples only at renewals (support + next-state support for the
    renewal's states), never at every step; and the Q values that weight the policy loss come from the current Q."""
    from agm.methods.efm.qipo import make_trainer

    g = torch.Generator().manual_seed(0)
    n = 64
    obs = torch.randn(n, 2, generator=g)
    data = OfflineDataset(observations=obs, actions=torch.rand(n, 1, generator=g) * 2 - 1, rewards=torch.randn(n, generator=g),
                          next_observations=obs.roll(1, 0), terminals=torch.zeros(n, dtype=torch.bool), timeouts=torch.zeros(n, dtype=torch.bool))
    cfg = _cfg(policy_hidden=8, policy_depth=1, q_hidden=8, q_depth=1, behaviour_steps=2, q_steps=2, improve_steps=9,
               renew_every=4, support_size=2, q_support_size=3, support_states=20, freeze_q=False)
    cfg.train.batch_size, cfg.improve_batch_size = 16, 8
    algo = QIPO(data, cfg, [-1.0], [1.0])
    trainer = make_trainer(algo)
    trainer.fit(4)
    calls = []
    real = algo.policy.sample
    monkeypatch.setattr(algo.policy, "sample", lambda o, m=1, **kw: calls.append((o.shape[0], m)) or real(o, m, **kw))
    trainer.fit()
    assert calls == [(20, 2), (20, 3)] * 3, calls  # 3 renewals (phase-3 steps 0, 4, 8), 20 states each
    assert algo.tables.next_support.shape == (20, 3, 1)
    # weights use the current Q: shifting both heads by +1 shifts the batch's Q values by exactly +1
    step = cfg.phase_ends[1] + 1  # not a renewal step
    b0 = algo.batch(step, torch.Generator().manual_seed(3))
    with torch.no_grad():
        for head in (algo.q.q1, algo.q.q2):
            list(head.parameters())[-1].add_(1.0)
    b1 = algo.batch(step, torch.Generator().manual_seed(3))
    torch.testing.assert_close(b1["support_q"], b0["support_q"] + 1.0)
