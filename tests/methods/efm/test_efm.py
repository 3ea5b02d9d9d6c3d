"""Unit tests of the EFM / ED objectives, weights, closed forms and errors (arXiv 2503.04975 sections 4-5).

Fast, no network training except a quadratic (exactly solvable) linear-model fit.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from agm.errors import ConfigError, DataError
from agm.objectives.bridge_matching import per_sample_mse
from agm.methods.efm.efm import (
    ContrastiveEnergyPrediction,
    EnergyWeightedDiffusion,
    EnergyWeightedFlowMatching,
    effective_sample_size,
    energy_weights,
    evaluate_energy,
    gaussian_log_normalizer,
    gaussian_tilt,
    gmm_quadratic_tilt,
    grouped_softmax,
    linear_energy,
    linear_tilt,
    ot_gaussian_velocity,
    quadratic_energy,
)
from agm.paths import gaussian_optimal_drift
from agm.paths.vp import VPPath


def _quad_1d(density, lo=-20.0, hi=20.0, n=400001):
    x = torch.linspace(lo, hi, n, dtype=torch.float64)
    p = density(x)
    dx = x[1] - x[0]
    z = p.sum() * dx
    mean = (p * x).sum() * dx / z
    var = (p * (x - mean) ** 2).sum() * dx / z
    return float(z), float(mean), float(var)


def _normal_pdf(x, m, v):
    return torch.exp(-((x - m) ** 2) / (2 * v)) / math.sqrt(2 * math.pi * v)


# ------------------------------------------------------------------------------- closed forms
def test_gaussian_tilt_numbers_and_quadrature():
    # Gaussian-quadratic tilt: m=1, std 2, A=1.5, c=-1, beta=0.7 => m_q=-0.615, sqrt(S_q)=0.877
    m, S, A, c = torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([[1.5]]), torch.tensor([-1.0])
    mq, Sq = gaussian_tilt(m, S, A, c, 0.7)
    assert abs(float(mq) + 0.615) < 1e-3 and abs(math.sqrt(float(Sq)) - 0.877) < 1e-3
    z, mean, var = _quad_1d(lambda x: _normal_pdf(x, 1.0, 4.0) * torch.exp(-0.7 * 0.75 * (x + 1) ** 2))
    assert abs(mean - float(mq)) < 1e-6 and abs(var - float(Sq)) < 1e-6
    assert abs(gaussian_log_normalizer(m, S, A, c, 0.7) - math.log(z)) < 1e-6


def test_linear_tilt_quadrature():
    m, S, g = torch.tensor([0.5]), torch.tensor([[2.0]]), torch.tensor([0.8])
    mq, Sq = linear_tilt(m, S, g, 1.3)
    _, mean, var = _quad_1d(lambda x: _normal_pdf(x, 0.5, 2.0) * torch.exp(-1.3 * 0.8 * x))
    assert abs(mean - float(mq)) < 1e-6 and abs(var - float(Sq)) < 1e-6


@pytest.mark.parametrize("beta", [0.0, 0.4, 2.0])
def test_gmm_quadratic_tilt_quadrature(beta):
    w, M, C = torch.tensor([0.3, 0.7]), torch.tensor([[-2.0], [2.0]]), torch.tensor([[[1.0]], [[0.5]]])
    A, c = torch.tensor([[1.5]]), torch.tensor([-1.0])
    nw, nm, nS = gmm_quadratic_tilt(w, M, C, A, c, beta)
    x = torch.linspace(-20, 20, 400001, dtype=torch.float64)
    comps = [w[k] * _normal_pdf(x, float(M[k]), float(C[k])) * torch.exp(-beta * 0.75 * (x + 1) ** 2) for k in range(2)]
    tot = sum(cc.sum() for cc in comps)
    for k in range(2):
        mass = float(comps[k].sum() / tot)
        mean_k = float((comps[k] * x).sum() / comps[k].sum())
        var_k = float((comps[k] * (x - mean_k) ** 2).sum() / comps[k].sum())
        assert abs(mass - float(nw[k])) < 1e-6
        assert abs(mean_k - float(nm[k, 0])) < 1e-6 and abs(var_k - float(nS[k, 0, 0])) < 1e-6


def test_ot_velocity_matches_core_gaussian_drift():
    # isotropic case of the affine field v* must equal the core's bridge oracle with sigma = 0, s0 = 1
    mu, s1 = torch.tensor([0.7, -0.3]), 1.6
    v = ot_gaussian_velocity(mu, s1**2 * torch.eye(2))
    ref = gaussian_optimal_drift(torch.zeros(2), 1.0, mu, s1, 0.0)
    x, t = torch.randn(64, 2), torch.rand(64) * 0.98 + 0.01
    torch.testing.assert_close(v(x, t), ref(x, t), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------- weights / loss
def test_batch_weights_are_softmax_and_ess():
    e = torch.tensor([0.0, 1.0, 2.0, -1.0])
    g = energy_weights(e, 0.5)
    ref = torch.exp(-0.5 * e) / torch.exp(-0.5 * e).sum()
    torch.testing.assert_close(g, ref)
    assert abs(effective_sample_size(g) - 1.0 / float((ref.double() ** 2).sum())) < 1e-5
    assert abs(effective_sample_size(energy_weights(e, 0.0)) - 4.0) < 1e-9


def test_effective_sample_size_normalisation_flag_and_rows():
    """The library's one ESS: (sum w)^2 / sum w^2, scale-free; normalised=True divides by B; dim= gives one per row."""
    w = torch.tensor([1.0, 1.0, 2.0, 4.0])
    ess = (8.0**2) / (1 + 1 + 4 + 16)
    assert abs(float(effective_sample_size(w)) - ess) < 1e-12
    assert abs(float(effective_sample_size(3.7 * w)) - ess) < 1e-12
    assert abs(float(effective_sample_size(w, normalised=True)) - ess / 4) < 1e-12
    assert abs(float(effective_sample_size(torch.ones(7), normalised=True)) - 1.0) < 1e-12
    rows = torch.stack([w, torch.ones(4)])
    torch.testing.assert_close(effective_sample_size(rows, dim=-1), torch.tensor([ess, 4.0], dtype=torch.float64))


def test_exact_and_none_normalisation_are_rescalings_of_batch():
    e = torch.randn(32)
    g = energy_weights(e, 1.2, normalization="batch")
    w = energy_weights(e, 1.2, normalization="exact", log_z=0.3)
    u = energy_weights(e, 1.2, normalization="none")
    torch.testing.assert_close(w / w.sum(), g)
    torch.testing.assert_close(u / u.sum(), g)
    assert abs(float(u.max()) - 1.0) < 1e-6


def test_beta_zero_is_plain_cfm_and_permutation_invariant():
    torch.manual_seed(1)
    net = nn.Linear(3, 2)
    model = lambda x, t: net(torch.cat([x, t[:, None]], 1))  # noqa: E731
    x1, x0, t = torch.randn(64, 2), torch.randn(64, 2), torch.rand(64)
    obj0 = EnergyWeightedFlowMatching(quadratic_energy(torch.eye(2), torch.zeros(2)), 0.0)
    out = obj0.loss(model, x1, x0=x0, t=t)
    plain = per_sample_mse(model((1 - t[:, None]) * x0 + t[:, None] * x1, t), x1 - x0).mean()
    torch.testing.assert_close(out.loss, plain)
    obj = EnergyWeightedFlowMatching(quadratic_energy(torch.eye(2), torch.zeros(2)), 1.7)
    perm = torch.randperm(64)
    a = obj.loss(model, x1, x0=x0, t=t).loss
    b = obj.loss(model, x1[perm], x0=x0[perm], t=t[perm]).loss
    torch.testing.assert_close(a, b)
    # the weight of each sample is exp(-beta E(x1)) normalised: check against a hand computation
    e = 0.5 * (x1**2).sum(1)
    ref = (torch.softmax(-1.7 * e, 0) * per_sample_mse(model((1 - t[:, None]) * x0 + t[:, None] * x1, t), x1 - x0)).sum()
    torch.testing.assert_close(a, ref)


def test_population_minimiser_is_tilted_velocity_at_fixed_t():
    """The Gaussian-quadratic tilt with an exactly solvable model: v(x) = a + b x at t = 0.5, fitted by L-BFGS on the EFM loss.

    Data p = N(1, 2^2), E = 1.5/2 (x+1)^2, beta = 0.7 => q = N(-0.6154, 0.877^2); closed form of the slope and
    intercept from ot_gaussian_velocity. Tolerance: weighted least squares with effective sample size ESS has
    SE(slope) = sd(u | x_t) / (sd_q(x_t) sqrt(ESS)), SE(intercept) ≈ sd(u | x_t) / sqrt(ESS) (x_t centred
    near 0); we allow 5 SE (false-failure probability < 1e-6 per coefficient).
    """
    gen = torch.Generator().manual_seed(0)
    n, beta = 200_000, 0.7
    m, S, A, c = torch.tensor([1.0]), torch.tensor([[4.0]]), torch.tensor([[1.5]]), torch.tensor([-1.0])
    x1 = (1.0 + 2.0 * torch.randn(n, 1, generator=gen)).double()
    x0 = torch.randn(n, 1, generator=gen).double()
    t = torch.full((n,), 0.5, dtype=torch.float64)
    lin = nn.Linear(1, 1).double()
    obj = EnergyWeightedFlowMatching(quadratic_energy(A, c), beta, normalization="exact", log_z=gaussian_log_normalizer(m, S, A, c, beta))
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=200, line_search_fn="strong_wolfe", tolerance_grad=1e-12)

    def closure():
        opt.zero_grad()
        loss = obj.loss(lambda x, tt: lin(x), x1, x0=x0, t=t).loss
        loss.backward()
        return loss

    opt.step(closure)
    mq, Sq = gaussian_tilt(m, S, A, c, beta)
    v = ot_gaussian_velocity(mq, Sq)
    b_true = float(v(torch.ones(1, 1), torch.tensor([0.5])) - v(torch.zeros(1, 1), torch.tensor([0.5])))
    a_true = float(v(torch.zeros(1, 1), torch.tensor([0.5])))
    assert abs(b_true + 0.261) < 2e-3 and abs(a_true + 0.696) < 2e-3  # closed-form numbers (hand computation)
    w = energy_weights(quadratic_energy(A, c)(x1), beta)
    ess = effective_sample_size(w)
    var_xt = 0.25 * float(Sq) + 0.25
    resid_sd = math.sqrt(float(Sq) + 1.0 - b_true**2 * var_xt)  # Var(u|x_t) = Var(u) - b^2 Var(x_t)
    se_b = resid_sd / math.sqrt(var_xt * ess)
    se_a = resid_sd / math.sqrt(ess) * 1.2
    assert abs(float(lin.weight.detach()) - b_true) < 5 * se_b, (float(lin.weight.detach()), b_true, se_b)
    assert abs(float(lin.bias.detach()) - a_true) < 5 * se_a, (float(lin.bias.detach()), a_true, se_a)


def test_grouped_softmax_oracles():
    # beta = 0 or constant Q per row => uniform weights 1/(M+1)
    q = torch.randn(5, 9)
    torch.testing.assert_close(grouped_softmax(0.0 * q), torch.full((5, 9), 1 / 9))
    torch.testing.assert_close(grouped_softmax(q[:, :1].expand(5, 9) * 3.0), torch.full((5, 9), 1 / 9))
    g = grouped_softmax(torch.tensor([[0.0, -100.0]]), cap=2.0)
    torch.testing.assert_close(g, torch.softmax(torch.tensor([[0.0, -2.0]]), -1))


def test_energy_weighted_diffusion_beta_zero_and_score_weighting():
    path = VPPath()
    net = nn.Linear(3, 2)
    model = lambda x, t: net(torch.cat([x, t[:, None]], 1))  # noqa: E731
    x1, t, eps = torch.randn(16, 2), torch.rand(16) * 0.9, torch.randn(16, 2)
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    ed = EnergyWeightedDiffusion(path, linear_energy(torch.ones(2)), 0.0)
    out = ed.loss(model, x1, t=t, generator=gen_a)
    s = path.sample(x1, t, generator=gen_b)
    torch.testing.assert_close(out.loss, per_sample_mse(model(s.xt, s.t), s.eps).mean())
    ed_s = EnergyWeightedDiffusion(path, linear_energy(torch.ones(2)), 0.0, weighting="score")
    out_s = ed_s.loss(model, x1, t=t, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(out_s.per_sample, out.per_sample / path.sigma(t) ** 2)


class _ExactEt(nn.Module):
    """E_t(x) for p = N(m, s^2), E = g x on the OT path: beta g t s^2 (x - t m) / V_t + const (derived)."""

    def __init__(self, m, s2, g, beta):
        super().__init__()
        self.m, self.s2, self.g, self.beta = m, s2, g, beta

    def forward(self, x, t):
        V = t**2 * self.s2 + (1 - t) ** 2
        return self.beta * self.g * t * self.s2 * (x[:, 0] - t * self.m) / V


def test_guidance_formula_with_exact_intermediate_energy():
    m, s2, g, beta = 0.4, 1.5, 0.8, 1.3
    base = ot_gaussian_velocity(torch.tensor([m]), torch.tensor([[s2]]))
    cep = ContrastiveEnergyPrediction(_ExactEt(m, s2, g, beta), linear_energy(torch.tensor([g])), beta)
    guided = cep.guided_field(base, t_floor=1e-6)
    mq, Sq = linear_tilt(torch.tensor([m]), torch.tensor([[s2]]), torch.tensor([g]), beta)
    target = ot_gaussian_velocity(mq, Sq)
    x, t = torch.randn(50, 1), torch.rand(50) * 0.95 + 0.05
    torch.testing.assert_close(guided(x, t), target(x, t), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------- bad input
def test_bad_beta_and_options_raise():
    E = linear_energy(torch.ones(1))
    with pytest.raises(ConfigError, match="beta"):
        EnergyWeightedFlowMatching(E, -0.1)
    with pytest.raises(ConfigError, match="beta"):
        EnergyWeightedFlowMatching(E, float("nan"))
    with pytest.raises(ConfigError, match="beta"):
        energy_weights(torch.zeros(3), -1.0)
    with pytest.raises(ConfigError, match="normalization"):
        EnergyWeightedFlowMatching(E, 1.0, normalization="global")
    with pytest.raises(ConfigError, match="log_z"):
        EnergyWeightedFlowMatching(E, 1.0, normalization="exact")
    with pytest.raises(ConfigError, match="weighting"):
        EnergyWeightedDiffusion(VPPath(), E, 1.0, weighting="snr")
    with pytest.raises(ConfigError, match="group_size"):
        ContrastiveEnergyPrediction(nn.Linear(1, 1), E, 1.0, group_size=1)


def test_non_finite_or_misshaped_energy_raises():
    x = torch.randn(4, 1)
    with pytest.raises(DataError, match="non-finite"):
        evaluate_energy(lambda z: torch.tensor([0.0, float("nan"), 1.0, 2.0]), x)
    with pytest.raises(DataError, match="non-finite"):
        energy_weights(torch.tensor([0.0, float("inf")]), 1.0)
    with pytest.raises(DataError, match="shape"):
        evaluate_energy(lambda z: torch.zeros(3), x)
    obj = EnergyWeightedFlowMatching(lambda z: torch.log(z[:, 0]), 1.0)  # log of negatives -> NaN
    with pytest.raises(DataError, match="energy"):
        obj.loss(lambda a, t: a, -torch.ones(4, 1))
