"""Bellman Diffusion Dynamics with exact fields: stationarity and convergence (docs/bellman.md)."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from agm.errors import ConfigError
from agm.methods.bellman.dynamics import BellmanDynamics
from agm.methods.bellman.langevin import LangevinDynamics


def npdf(x, var=1.0, mu=0.0):
    return torch.exp(-0.5 * (x - mu) ** 2 / var) / math.sqrt(2 * math.pi * var)


p1 = lambda x: npdf(x[:, 0])
dp1 = lambda x: -x * npdf(x)


def _ks_ok(x, cdf, n_eff):
    # KS statistic under H0 has P(D > 1.63/sqrt(n)) = 0.01; we allow 1.95/sqrt(n) (p ~ 0.001).
    # Particles are independent, so n_eff = n.
    d = stats.kstest(x, cdf).statistic
    return d, d < 1.95 / math.sqrt(n_eff)


def test_stationary_1d_and_sqrt2p_breaks_it():
    n = 4000
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    x = BellmanDynamics(steps=1500, step_size=0.02).sample(dp1, x0, p1, generator=gen)
    d, ok = _ks_ok(x[:, 0].numpy(), "norm", n)
    assert ok, d
    # variance SE = sqrt(2/n) = 0.022; 5 SE
    assert abs(float(x.var()) - 1.0) < 0.11
    # wrong constant sqrt(2 p) (docs/bellman.md): variance drifts upward (3.3 by t = 50; here t = 30)
    xw = BellmanDynamics(steps=1500, step_size=0.02, noise_scale=math.sqrt(2)).sample(dp1, x0, p1, generator=gen)
    assert float(xw.var()) > 1.8
    assert not _ks_ok(xw[:, 0].numpy(), "norm", n)[1]


def test_converges_1d_from_offset_start():
    # oracle 7.4: from N(1.5, 0.09) to N(0, 1)
    n = 4000
    gen = torch.Generator().manual_seed(1)
    x0 = 1.5 + 0.3 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    x = BellmanDynamics(steps=2000, step_size=0.025).sample(dp1, x0, p1, generator=gen)
    d, ok = _ks_ok(x[:, 0].numpy(), "norm", n)
    assert ok, d


def test_biased_pair_keeps_p_and_naive_pair_does_not():
    # oracle 7.5: eps = 0.5, f = h = N(0, 1.5), g = grad(p h)/(2p) keeps N(0,1); g = h' samples h = N(0, 1.5)
    n, eps = 4000, 0.5
    gen = torch.Generator().manual_seed(2)
    h = lambda x: npdf(x[:, 0], 1 + eps)
    g_star = lambda x: -0.5 * npdf(x, 1 + eps) * x * (1 / (1 + eps) + 1.0)
    g_naive = lambda x: -x / (1 + eps) * npdf(x, 1 + eps)
    x0 = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    xs = BellmanDynamics(steps=1500, step_size=0.02).sample(g_star, x0, h, generator=gen)
    xn = BellmanDynamics(steps=1500, step_size=0.02).sample(g_naive, x0, h, generator=gen)
    assert abs(float(xs.var()) - 1.0) < 0.11  # 5 SE (SE = sqrt(2/n) = 0.022)
    assert float(xn.var()) > 1.25


def test_2d_exact_fields_converge_to_correlated_gaussian():
    # 2-D: p = N(0, C), C = [[1, .6], [.6, .8]]; start N(0, 0.25 I); check marginals by KS and the covariance.
    C = torch.tensor([[1.0, 0.6], [0.6, 0.8]], dtype=torch.float64)
    P = torch.linalg.inv(C)
    norm = 1 / (2 * math.pi * math.sqrt(float(torch.det(C))))
    p = lambda x: norm * torch.exp(-0.5 * ((x @ P) * x).sum(-1))
    dp = lambda x: -p(x)[:, None] * (x @ P)
    n = 4000
    gen = torch.Generator().manual_seed(3)
    x0 = 0.5 * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    x = BellmanDynamics(steps=2000, step_size=0.1).sample(dp, x0, p, generator=gen)
    for i in range(2):
        d, ok = _ks_ok(x[:, i].numpy(), stats.norm(0, math.sqrt(float(C[i, i]))).cdf, n)
        assert ok, (i, d)
    cov = torch.cov(x.T)
    # covariance entry SE <= sqrt((C_ii C_jj + C_ij^2)/n) <= 0.021; 5 SE
    assert torch.allclose(cov, C, atol=0.105), cov


def test_negative_f_is_safe_and_freezes():
    # f <= 0 everywhere: clamp gives zero noise, no NaN; the drift alone moves particles
    x0 = torch.randn(100, 1)
    x = BellmanDynamics(steps=10, step_size=0.1).sample(lambda x: torch.zeros_like(x), x0, lambda x: -torch.ones(x.shape[0]))
    assert torch.equal(x, x0)
    s = BellmanDynamics(steps=10, step_size=0.1, positivity="softplus")
    assert torch.isfinite(s.sample(lambda x: torch.zeros_like(x), x0, lambda x: -torch.ones(x.shape[0]))).all()
    assert s.last_stats["frozen_fraction"] == 1.0
    clip = BellmanDynamics(steps=1, step_size=1.0, drift_clip=0.5)
    y = clip.sample(lambda x: 100 * torch.ones_like(x), torch.zeros(5, 1), lambda x: torch.zeros(x.shape[0]))
    assert torch.allclose(y, torch.full((5, 1), 0.5))


def test_langevin_exact_score_stationary():
    n = 4000
    gen = torch.Generator().manual_seed(4)
    x0 = torch.randn(n, 1, generator=gen, dtype=torch.float64)
    x = LangevinDynamics(steps=500, step_size=0.01).sample(lambda x: -x, x0, generator=gen)
    # ULA bias: stationary var = 1/(1 - eta/2) = 1.005 ; tolerance 5 SE (0.11)
    assert abs(float(x.var()) - 1.0) < 0.11


def test_bad_config():
    with pytest.raises(ConfigError, match="steps"):
        BellmanDynamics(steps=0)
    with pytest.raises(ConfigError, match="step_size"):
        BellmanDynamics(step_size=-0.1)
    with pytest.raises(ConfigError, match="positivity"):
        BellmanDynamics(positivity="relu")
    with pytest.raises(ConfigError, match="density"):
        BellmanDynamics().sample(dp1, torch.zeros(3, 1))
    with pytest.raises(ConfigError, match="step_size"):
        LangevinDynamics(step_size=0)
