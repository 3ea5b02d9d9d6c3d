"""QIPO's Q-weighted policy update on exact tiny cases (issue 19; arXiv 2503.04975 eq. 5.2, eq. 5.4, Algorithm 2).

The weights g_ij = softmax_j(beta Q(s_i, a_ij)) must be normalised over the candidates of the SAME state, the
support table must pair every candidate (and its Q value) with the state it was drawn for, and on a bandit whose
best action depends on the state the trained policy must move towards each state's own high-Q action, by the
closed-form amount, and further for a larger beta.
"""
from __future__ import annotations

import math

import pytest
import torch

from agm.data.offline import OfflineDataset
from agm.methods.efm import QIPO, QIPOConfig, qipo_policy_loss
from agm.methods.efm.policy import FlowPolicy, Normalizer
from agm.methods.efm.qipo import make_trainer


def _cfg(lr=None, **kw) -> QIPOConfig:
    cfg = QIPOConfig(**kw)
    cfg.train.progress = False
    if lr is not None:
        cfg.train.lr = lr
    return cfg.validate()


def _two_state_data(n: int, std: float, seed: int = 0) -> OfflineDataset:
    """States s in {-1, +1} (alternating rows), behaviour mu(.|s) = N(0, std^2) in both."""
    g = torch.Generator().manual_seed(seed)
    obs = torch.where(torch.arange(n) % 2 == 0, 1.0, -1.0)[:, None]
    acts = (std * torch.randn(n, 1, generator=g)).clamp(-1, 1)
    return OfflineDataset(observations=obs, actions=acts, rewards=torch.zeros(n), next_observations=obs,
                          terminals=torch.ones(n, dtype=torch.bool), timeouts=torch.zeros(n, dtype=torch.bool))


def test_weights_are_normalised_over_the_candidates_of_each_state():
    """g (B, K) = softmax over K (the candidates of one state), never over the batch: rows sum to 1, and each row
    depends only on its own Q values (changing another state's Q leaves it unchanged)."""
    torch.manual_seed(0)
    pol = FlowPolicy(1, 1, Normalizer(torch.zeros(1), torch.ones(1)), hidden=8, depth=1)
    obs, acts = torch.randn(3, 1), torch.rand(3, 4, 1) * 2 - 1
    q = torch.tensor([[0.0, 1.0, 2.0, 3.0], [5.0, 5.0, 5.0, 5.0], [-10.0, 0.0, 0.0, 0.0]])
    _, g = qipo_policy_loss(pol, obs, acts, q, 2.0)
    torch.testing.assert_close(g.sum(1), torch.ones(3))
    torch.testing.assert_close(g[0], torch.softmax(2.0 * q[0], 0))
    torch.testing.assert_close(g[1], torch.full((4,), 0.25))
    q2 = q.clone()
    q2[1] += 100.0  # another state's Q level must not move row 0's weights
    _, g2 = qipo_policy_loss(pol, obs, acts, q2, 2.0)
    torch.testing.assert_close(g2[0], g[0])
    assert bool((g[0][1:] > g[0][:-1]).all())  # higher Q, higher weight (the sign)


def test_support_table_and_batches_pair_candidates_with_their_own_state():
    """Q(s, a) = s a with distinct states: every stored Q value, and every phase-3 batch's obs / support / Q
    triple, must satisfy Q = s a for the row's own state (a shuffle of states vs candidates breaks it)."""
    n = 50
    obs = torch.linspace(-2, 2, n)[:, None]
    g = torch.Generator().manual_seed(0)
    data = OfflineDataset(observations=obs, actions=torch.rand(n, 1, generator=g) * 2 - 1, rewards=torch.zeros(n),
                          next_observations=obs, terminals=torch.ones(n, dtype=torch.bool), timeouts=torch.zeros(n, dtype=torch.bool))
    cfg = _cfg(policy_hidden=8, policy_depth=1, behaviour_steps=1, q_steps=0, improve_steps=3, renew_every=10,
               support_size=5, support_states=20, improve_batch_size=16, freeze_q=True)  # frozen Q: a stored Q table
    algo = QIPO(data, cfg, [-1.0], [1.0], seed=0, q_fn=lambda o, a: o[:, 0] * a[:, 0])
    b = algo.batch(cfg.phase_ends[1], torch.Generator().manual_seed(1))  # renews the table, then draws a batch
    t = algo.tables
    assert len(set(t.support_idx.tolist())) == 20
    torch.testing.assert_close(t.support_q, obs[t.support_idx] * t.support[..., 0])
    torch.testing.assert_close(t.support[:, 0], algo.actions[t.support_idx])  # column 0: the state's own data action
    torch.testing.assert_close(b["support_q"], b["obs"] * b["support"][..., 0])


def _fit_two_state_bandit(betas, *, steps_per_renewal=500, renewals=2):
    """Phase 1 once, then phase 3 from the same state for each beta; returns {beta: (mean at s=+1, mean at s=-1, sd)}."""
    m, s, c = 0.0, 0.3, 1.5
    data = _two_state_data(2048, s)
    cfg = _cfg(beta=betas[0], support_size=32, behaviour_steps=1000, q_steps=0, improve_steps=renewals * steps_per_renewal,
               renew_every=steps_per_renewal, improve_batch_size=32, policy_hidden=64, policy_depth=2, sampler_steps=20,
               sampler_method="heun", include_dataset_action=False, support_states=None, freeze_q=True, lr=3e-3)
    algo = QIPO(data, cfg, [-1.0], [1.0], seed=0, q_fn=lambda o, a: c * o[:, 0] * a[:, 0])  # best action: sign(s)
    trainer = make_trainer(algo)
    trainer.fit(cfg.phase_ends[0])
    snap = trainer.snapshot()
    out = {}
    for beta in betas:
        trainer.restore(snap)
        algo.cfg.beta = beta
        algo.gen.manual_seed(1)
        trainer.fit(cfg.phase_ends[2])
        gen = torch.Generator().manual_seed(5)
        xp = algo.policy.sample(torch.ones(4000, 1), 1, generator=gen)[:, 0, 0].double()
        xm = algo.policy.sample(-torch.ones(4000, 1), 1, generator=gen)[:, 0, 0].double()
        out[beta] = (float(xp.mean()), float(xm.mean()), float(xp.std()), float(xm.std()))
    return out, (m, s, c, renewals)


def test_two_state_bandit_moves_each_state_to_its_own_high_q_action_by_the_exact_tilt():
    """mu(.|s) = N(0, s^2) at s = +1 and s = -1, exact Q(s, a) = c s a (the best action is +1 at s = +1, -1 at
    s = -1), support only from pi_{l-1} (dataset action excluded, so the closed form is exact): after L renewals
    pi_L(.|s) = N(L beta c s sigma^2, sigma^2) (eq. 5.4). beta = 0.5 and 1.0 give shifts +-0.135 and +-0.27.

    Tolerance as in test_qipo.py's one-state bandit: 4 SE of 4000 samples (0.019 for the mean) + 0.05 for
    fit / ODE / clipping error. A sign error, weights normalised across states, or candidates paired with the
    other state would move both states the same way (or not at all) and fail; so would a missing renewal (the
    shift is 2x one renewal's)."""
    out, (m, s, c, L) = _fit_two_state_bandit([0.5, 1.0])
    se = 4 * s / math.sqrt(4000)
    for beta, (mp, mm, sp, sm) in out.items():
        target = m + L * beta * c * s**2
        assert abs(mp - target) < se + 0.05, (beta, mp, target)
        assert abs(mm + target) < se + 0.05, (beta, mm, -target)
        for sd in (sp, sm):
            assert abs(sd - s) < 4 * s / math.sqrt(8000) + 0.05, (beta, sd)
    # a larger beta moves each state further towards its own high-Q action
    assert out[1.0][0] - out[0.5][0] > 0.07 and out[0.5][1] - out[1.0][1] > 0.07, out
