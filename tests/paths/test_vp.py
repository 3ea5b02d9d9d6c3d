"""Tests of agm.paths.vp.VPPath against closed forms (Gaussian data: exact eps-predictor)."""
import math

import numpy as np
import pytest
import torch
from scipy import integrate

from agm.errors import ConfigError
from agm.paths.vp import VPPath, gaussian_eps_predictor
from agm.samplers import EulerMaruyama, ODESampler


def test_alpha_matches_integral_of_beta():
    path = VPPath(0.1, 20.0)
    for t in [0.0, 0.1, 0.5, 0.9, 1.0]:
        # a(t) = exp(-1/2 int_t^1 beta(1 - r) dr), integrated numerically
        val, _ = integrate.quad(lambda r: 0.1 + (1 - r) * 19.9, t, 1.0)
        assert float(path.alpha(torch.tensor(t, dtype=torch.float64))) == pytest.approx(math.exp(-0.5 * val), rel=1e-10)
    tt = torch.linspace(0, 1, 11, dtype=torch.float64)
    assert torch.allclose(path.alpha(tt) ** 2 + path.sigma(tt) ** 2, torch.ones_like(tt))
    assert float(path.alpha(torch.tensor(1.0))) == 1.0 and float(path.sigma(torch.tensor(1.0))) == 0.0


def test_sample_marginal_moments():
    path = VPPath()
    n = 200_000
    x1 = 2.0 + 0.5 * torch.randn(n, 1, dtype=torch.float64)
    t = torch.full((n,), 0.7, dtype=torch.float64)
    s = path.sample(x1, t)
    a, sg = float(path.alpha(t[:1])), float(path.sigma(t[:1]))
    var = a**2 * 0.25 + sg**2
    # mean SE = sqrt(var / n); 5 SE. Var SE ~ var sqrt(2 / n); 5 SE.
    assert abs(float(s.xt.mean()) - 2 * a) < 5 * math.sqrt(var / n)
    assert abs(float(s.xt.var()) - var) < 5 * var * math.sqrt(2 / n)
    assert torch.equal(s.target, s.eps)


def test_exact_eps_predictor_is_conditional_mean():
    # E[eps | x_t] regression: the exact predictor must beat a perturbed one in MSE (and match the MC regression slope).
    path = VPPath()
    n = 100_000
    g = torch.Generator().manual_seed(1)
    x1 = 1.0 + 0.3 * torch.randn(n, 1, generator=g, dtype=torch.float64)
    t = torch.full((n,), 0.5, dtype=torch.float64)
    s = path.sample(x1, t, generator=g)
    eps_hat = gaussian_eps_predictor(path, 1.0, 0.3)(s.xt, t)
    xc = s.xt - s.xt.mean()
    slope = float((xc * s.eps).sum() / (xc**2).sum())
    a, sg = float(path.alpha(t[:1])), float(path.sigma(t[:1]))
    pred_slope = sg / (a**2 * 0.09 + sg**2)
    # slope SE ~ sqrt(resid_var / (n var_x)); resid_var <= 1, var_x ~ 1/pred_slope*sg: use 5/sqrt(n) * 3 bound
    assert abs(slope - pred_slope) < 15 / math.sqrt(n)
    assert float(((eps_hat - s.eps) ** 2).mean()) < float(((1.1 * eps_hat - s.eps) ** 2).mean())


@pytest.mark.parametrize("kind", ["sde", "ode"])
def test_reverse_dynamics_recover_gaussian(kind):
    m, sd = 2.0, 0.5
    path = VPPath()
    eps_model = gaussian_eps_predictor(path, m, sd)
    n = 20_000
    g = torch.Generator().manual_seed(0)
    x0 = path.prior((n, 1), generator=g, dtype=torch.float64)
    if kind == "sde":
        drift, diff = path.reverse_sde(eps_model)
        x = EulerMaruyama(steps=1000).sample(drift, x0, diff, generator=g)
    else:
        x = ODESampler(steps=500, method="heun").sample(path.probability_flow(eps_model), x0)
    # mean SE = sd / sqrt(n) = 0.0035; var SE = sd^2 sqrt(2/n) = 0.0025; allow 5 SE + 0.01 discretisation bias
    assert abs(float(x.mean()) - m) < 5 * sd / math.sqrt(n) + 0.01
    assert abs(float(x.var()) - sd**2) < 5 * sd**2 * math.sqrt(2 / n) + 0.01


def test_wrong_score_sign_fails():
    # the oracle must be able to fail: a sign-flipped score does not reach N(2, 0.25)
    path = VPPath()
    eps_model = gaussian_eps_predictor(path, 2.0, 0.5)
    drift, diff = path.reverse_sde(lambda x, t: -eps_model(x, t))
    x = EulerMaruyama(steps=200).sample(drift, torch.randn(2000, 1, dtype=torch.float64), diff)
    assert abs(float(x.mean()) - 2.0) > 0.5 or abs(float(x.var()) - 0.25) > 0.1


def test_bad_config():
    with pytest.raises(ConfigError, match="beta_min"):
        VPPath(beta_min=0.0)
    with pytest.raises(ConfigError, match="beta_max"):
        VPPath(beta_min=5.0, beta_max=1.0)
    with pytest.raises(ConfigError, match="t_max"):
        VPPath(t_min=0.5, t_max=0.2)
