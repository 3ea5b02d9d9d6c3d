"""End-to-end closed-form tests of EFM and energy-weighted diffusion (arXiv 2503.04975 section 4; closed forms in docs/efm_qipo.md).

A small TimeMLP is trained with the EFM (or ED) loss on samples of p only; its ODE samples must follow the
closed-form tilted law q ∝ p exp(-beta E).

Tolerance derivation (used by every test below). The learned q is fitted to a weighted sample of n_train
points whose Boltzmann weights have effective sample size ESS = (sum w)^2 / sum w^2, and is then checked on
n_gen generated samples. For a mean, SE = sd_q sqrt(1/ESS + 1/n_gen); for a variance, SE = var_q sqrt(2/ESS +
2/n_gen) (Gaussian fourth moment); for a covariance, SE = sqrt((S_ii S_jj + S_ij^2)(1/ESS + 1/n_gen)); for a
mode weight, SE = sqrt(pi(1-pi)(1/ESS + 1/n_gen)). We assert |error| < 4 SE + delta, where delta = 0.02
(absolute) is an explicit allowance for finite network capacity, optimisation and ODE discretisation error
(measured at ~0.005-0.02 during development). 4 SE keeps the false-failure probability per check below 1e-4.
"""
from __future__ import annotations

import math

import pytest
import torch

from agm.nets import TimeMLP
from agm.methods.efm.efm import (
    EnergyWeightedDiffusion,
    EnergyWeightedFlowMatching,
    effective_sample_size,
    energy_weights,
    fit_weighted_flow,
    gaussian_tilt,
    gmm_quadratic_tilt,
    linear_energy,
    linear_tilt,
    quadratic_energy,
)
from agm.paths.vp import VPPath
from agm.samplers import ODESampler

DELTA = 0.02
N_TRAIN, N_GEN = 20_000, 10_000


def _train_and_sample(data, energy, beta, *, steps=1000, dim=None, seed=0):
    torch.manual_seed(seed)
    dim = data.shape[1]
    net = TimeMLP(dim, hidden=64, depth=2)
    fit_weighted_flow(net, data, EnergyWeightedFlowMatching(energy, beta), steps=steps, batch_size=512, lr=3e-3, seed=seed)
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        x = ODESampler(30, "heun").sample(lambda x, t: net(x, t), torch.randn(N_GEN, dim, generator=gen))
    ess = effective_sample_size(energy_weights(energy(data), beta))
    return x, ess


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_efm_gaussian_quadratic_tilt_2d(beta):
    gen = torch.Generator().manual_seed(1)
    m, S = torch.tensor([1.0, -0.5]), torch.tensor([[1.0, 0.3], [0.3, 0.5]])
    A, c = torch.tensor([[1.5, 0.0], [0.0, 0.5]]), torch.tensor([-1.0, 1.0])
    data = m + torch.randn(N_TRAIN, 2, generator=gen) @ torch.linalg.cholesky(S).T
    x, ess = _train_and_sample(data, quadratic_energy(A, c), beta)
    mq, Sq = gaussian_tilt(m, S, A, c, beta)
    inv = 1.0 / ess + 1.0 / N_GEN
    mean, cov = x.double().mean(0), torch.cov(x.double().T)
    for i in range(2):
        assert abs(mean[i] - mq[i]) < 4 * math.sqrt(Sq[i, i] * inv) + DELTA, (i, mean, mq)
        assert abs(cov[i, i] - Sq[i, i]) < 4 * Sq[i, i] * math.sqrt(2 * inv) + DELTA, (i, cov, Sq)
    se01 = math.sqrt((Sq[0, 0] * Sq[1, 1] + Sq[0, 1] ** 2) * inv)
    assert abs(cov[0, 1] - Sq[0, 1]) < 4 * se01 + DELTA, (cov, Sq)
    # the tilt must actually move the law: the unweighted mean is far outside the tolerance
    assert abs(float(mean[0]) - 1.0) > 0.5


def test_efm_linear_energy_is_mean_shift_1d():
    gen = torch.Generator().manual_seed(2)
    beta, g = 1.0, torch.tensor([0.75])
    data = 0.5 + 1.2 * torch.randn(N_TRAIN, 1, generator=gen)
    x, ess = _train_and_sample(data, linear_energy(g), beta)
    mq, Sq = linear_tilt(torch.tensor([0.5]), torch.tensor([[1.44]]), g, beta)  # N(0.5 - 1.08, 1.44)
    inv = 1.0 / ess + 1.0 / N_GEN
    assert abs(float(x.mean()) - float(mq)) < 4 * math.sqrt(float(Sq) * inv) + DELTA
    assert abs(float(x.var()) - float(Sq)) < 4 * float(Sq) * math.sqrt(2 * inv) + DELTA


def test_efm_mixture_mode_weights_1d():
    """p = 0.5 N(-2, 0.5^2) + 0.5 N(2, 0.5^2), E = 0.25 (x - 1)^2, beta = 1: the tilted weights move to ~(0.12, 0.88)."""
    gen = torch.Generator().manual_seed(3)
    w0, M, C = torch.tensor([0.5, 0.5]), torch.tensor([[-2.0], [2.0]]), torch.tensor([[[0.25]], [[0.25]]])
    A, c, beta = torch.tensor([[0.5]]), torch.tensor([1.0]), 1.0
    comp = torch.randint(0, 2, (N_TRAIN,), generator=gen)
    data = M[comp] + 0.5 * torch.randn(N_TRAIN, 1, generator=gen)
    x, ess = _train_and_sample(data, quadratic_energy(A, c), beta, steps=1200)
    wq, mq, Sq = gmm_quadratic_tilt(w0, M, C, A, c, beta)
    # assign each generated sample to the component of q with the larger responsibility (the modes are
    # > 8 sd apart, so misassignment is negligible)
    logp = torch.stack([torch.log(wq[k]) - 0.5 * (x[:, 0].double() - mq[k, 0]) ** 2 / Sq[k, 0, 0] - 0.5 * torch.log(Sq[k, 0, 0]) for k in range(2)], 1)
    frac_right = float((logp.argmax(1) == 1).double().mean())
    pi = float(wq[1])
    assert 0.8 < pi < 0.95  # the oracle itself: the tilt changes the weights substantially
    se = math.sqrt(pi * (1 - pi) * (1.0 / ess + 1.0 / N_GEN))
    assert abs(frac_right - pi) < 4 * se + DELTA, (frac_right, pi, se)
    right = x[logp.argmax(1) == 1, 0].double()
    assert abs(float(right.mean()) - float(mq[1, 0])) < 4 * math.sqrt(float(Sq[1, 0, 0]) * (1 / (pi * ess) + 1 / (pi * N_GEN))) + DELTA


def test_energy_weighted_diffusion_gaussian_tilt_1d():
    """ED (Algorithm 1 of the EFM paper) on the VP path, sampled with the probability-flow ODE."""
    gen = torch.Generator().manual_seed(4)
    m, S, A, c, beta = torch.tensor([1.0]), torch.tensor([[1.0]]), torch.tensor([[1.0]]), torch.tensor([-1.0]), 1.5
    data = 1.0 + torch.randn(N_TRAIN, 1, generator=gen)
    energy = quadratic_energy(A, c)
    path = VPPath(beta_min=0.1, beta_max=10.0)
    torch.manual_seed(0)
    net = TimeMLP(1, hidden=64, depth=2)
    fit_weighted_flow(net, data, EnergyWeightedDiffusion(path, energy, beta), steps=1200, batch_size=512, lr=3e-3, seed=0)
    with torch.no_grad():
        field = path.probability_flow(lambda x, t: net(x, t))
        x = ODESampler(60, "heun", t0=0.0, t1=path.t_max).sample(field, torch.randn(N_GEN, 1, generator=gen))
    mq, Sq = gaussian_tilt(m, S, A, c, beta)  # N(-0.2, 0.4)
    ess = effective_sample_size(energy_weights(energy(data), beta))
    inv = 1.0 / ess + 1.0 / N_GEN
    assert abs(float(x.mean()) - float(mq)) < 4 * math.sqrt(float(Sq) * inv) + DELTA
    assert abs(float(x.var()) - float(Sq)) < 4 * float(Sq) * math.sqrt(2 * inv) + DELTA
