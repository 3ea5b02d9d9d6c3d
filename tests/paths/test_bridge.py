"""Brownian bridge against closed forms (agm-digest.md section 2)."""
import math

import pytest
import torch

from agm.errors import ConfigError
from agm.paths import BrownianBridge, gaussian_bridge_marginal, gaussian_optimal_drift
from agm.samplers import EulerMaruyama


def test_target_equals_bridge_drift_identity():
    # u_t = (x_1 - x_t) / (1 - t) exactly, for every sample
    g = torch.Generator().manual_seed(1)
    path = BrownianBridge(sigma=0.7, t_max=0.99)
    x0, x1 = torch.randn(64, 3, generator=g), torch.randn(64, 3, generator=g)
    s = path.sample(x0, x1, generator=g)
    expected = (x1 - s.xt) / (1 - s.t)[:, None]
    torch.testing.assert_close(s.target, expected, rtol=1e-4, atol=1e-4)


def test_sigma_zero_is_linear_path():
    path = BrownianBridge(sigma=0.0)
    x0, x1 = torch.randn(16, 2), torch.randn(16, 2)
    t = torch.rand(16)
    s = path.sample(x0, x1, t)
    torch.testing.assert_close(s.xt, (1 - t)[:, None] * x0 + t[:, None] * x1)
    torch.testing.assert_close(s.target, x1 - x0)


@pytest.mark.parametrize("t", [0.2, 0.5, 0.9])
def test_marginal_matches_closed_form(t):
    # x_t for Gaussian endpoints is Gaussian; check mean and variance with CLT tolerances.
    n, d = 200_000, 2
    g = torch.Generator().manual_seed(2)
    m0, m1, s0, s1, sigma = torch.tensor([0.0, 0.0]), torch.tensor([2.0, -1.0]), 1.0, 0.5, 0.8
    x0 = m0 + s0 * torch.randn(n, d, generator=g)
    x1 = m1 + s1 * torch.randn(n, d, generator=g)
    s = BrownianBridge(sigma, t_max=0.99).sample(x0, x1, torch.full((n,), t), generator=g)
    mean, std = gaussian_bridge_marginal(t, m0, s0, m1, s1, sigma)
    # standard error of the mean: std / sqrt(n); of the variance: var * sqrt(2 / n); 5 standard errors
    assert torch.all((s.xt.mean(0) - mean).abs() < 5 * std / math.sqrt(n))
    assert torch.all((s.xt.var(0) - std**2).abs() < 5 * std**2 * math.sqrt(2 / n))


def test_closed_form_drift_is_conditional_expectation():
    # E[u_t | x_t] = f*(x_t): the residual u_t - f*(x_t) must be uncorrelated with x_t and have mean 0
    n = 400_000
    g = torch.Generator().manual_seed(3)
    m0, m1, s0, s1, sigma = torch.zeros(1), torch.tensor([1.5]), 1.0, 0.3, 0.6
    x0 = m0 + s0 * torch.randn(n, 1, generator=g)
    x1 = m1 + s1 * torch.randn(n, 1, generator=g)
    t = torch.full((n,), 0.6)
    s = BrownianBridge(sigma, t_max=0.99).sample(x0, x1, t, generator=g)
    r = s.target - gaussian_optimal_drift(m0, s0, m1, s1, sigma)(s.xt, t)
    xc = s.xt - s.xt.mean()
    corr = float((r.flatten() * xc.flatten()).mean() / (r.std() * xc.std()))
    assert abs(float(r.mean())) < 5 * float(r.std()) / math.sqrt(n)
    assert abs(corr) < 5 / math.sqrt(n)


@pytest.mark.parametrize("sigma", [0.0, 0.5, 1.0])
def test_em_with_exact_drift_reaches_data(sigma):
    # EM chain from N(0, 1) with the exact Markovian drift ends at N(m, s^2) up to discretisation error.
    n = 100_000
    m1, s1 = torch.tensor([2.0, -1.0]), 0.5
    f = gaussian_optimal_drift(torch.zeros(2), 1.0, m1, s1, sigma)
    g = torch.Generator().manual_seed(4)
    x = EulerMaruyama(steps=400).sample(f, torch.randn(n, 2, generator=g), sigma, generator=g)
    # tolerance: 5 standard errors plus an O(1/steps) discretisation allowance of 0.02
    assert torch.all((x.mean(0) - m1).abs() < 5 * s1 / math.sqrt(n) + 0.02)
    assert torch.all((x.std(0) - s1).abs() < 5 * s1 / math.sqrt(2 * n) + 0.02)


def test_bad_parameters():
    with pytest.raises(ConfigError, match="sigma"):
        BrownianBridge(sigma=-1)
    with pytest.raises(ConfigError, match="t_max"):
        BrownianBridge(sigma=0.5, t_max=1.0)
    with pytest.raises(ConfigError, match="t_min"):
        BrownianBridge(sigma=0.0, t_min=0.5, t_max=0.4)
