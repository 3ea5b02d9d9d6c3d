"""Toy data sets: shapes, determinism, seeds, mode weights, supports and densities (agm.data.toy)."""
import math

import numpy as np
import pytest
import torch

from agm.data import toy
from agm.data.toy import TOY_1D, TOY_2D, make_toy, toy_names
from agm.errors import ConfigError


def test_names_listed():
    assert toy_names() == TOY_2D + TOY_1D
    assert set(TOY_2D) == {"moons", "8gaussians", "checkerboard", "pinwheel", "swissroll", "unbalanced_mixture"}
    assert set(TOY_1D) == {"gmm1d", "uniform3", "bimodal1d"}


@pytest.mark.parametrize("name", TOY_2D + TOY_1D)
def test_shape_dtype_determinism_scale(name):
    x = make_toy(name, 4000, seed=3)
    d = 2 if name in TOY_2D else 1
    assert x.shape == (4000, d) and x.dtype == torch.float32
    assert toy.toy_dim(name) == d
    assert torch.isfinite(x).all()
    assert torch.equal(x, make_toy(name, 4000, seed=3))  # same seed -> same points
    assert not torch.equal(x, make_toy(name, 4000, seed=4))  # other seed -> other points
    # roughly standardised: 99% of |coordinates| within 4, none beyond 5.5
    assert torch.quantile(x.abs().flatten(), 0.99) <= 4.0
    assert x.abs().max() <= 5.5
    # the global RNG is neither used nor advanced
    torch.manual_seed(123)
    a = torch.rand(3)
    torch.manual_seed(123)
    make_toy(name, 10, seed=0)
    assert torch.equal(a, torch.rand(3))


def test_small_n_and_numpy_int():
    assert make_toy("moons", 1).shape == (1, 2)
    assert make_toy("gmm1d", np.int64(7), seed=np.int64(2)).shape == (7, 1)


def test_unbalanced_mixture_weights():
    # Each empirical weight p_hat_k ~ Binomial(n, w_k)/n with standard error sqrt(w_k (1 - w_k) / n);
    # accept |p_hat_k - w_k| <= 4 SE (two-sided prob. of failing < 7e-5 per mode under the model).
    n = 20000
    x = make_toy("unbalanced_mixture", n, seed=0)
    w = torch.tensor(toy.UNBALANCED_WEIGHTS, dtype=torch.float64)
    p_hat = toy.mode_weights(x)
    se = torch.sqrt(w * (1 - w) / n)
    assert torch.all((p_hat - w).abs() <= 4 * se), (p_hat, w, se)
    assert toy.UNBALANCED_WEIGHTS == (0.7, 0.2, 0.1)
    assert len(toy.UNBALANCED_MEANS) == 3
    # points drawn at the means are assigned to their own mode
    means = torch.tensor(toy.UNBALANCED_MEANS)
    assert toy.assign_modes(means).tolist() == [0, 1, 2]


def test_eight_gaussians_equal_weights():
    n = 16000
    p_hat = toy.mode_weights(make_toy("8gaussians", n, seed=1), "8gaussians")
    se = math.sqrt((1 / 8) * (7 / 8) / n)  # binomial standard error, as above
    assert torch.all((p_hat - 1 / 8).abs() <= 4 * se)


def test_uniform3_support_and_masses():
    n = 15000
    x = make_toy("uniform3", n, seed=2)[:, 0].double()
    inside = torch.zeros(n, dtype=torch.bool)
    lengths = torch.tensor([b - a for a, b in toy.UNIFORM3_INTERVALS], dtype=torch.float64)
    p = lengths / lengths.sum()
    for k, (a, b) in enumerate(toy.UNIFORM3_INTERVALS):
        ink = (x >= a) & (x <= b)
        inside |= ink
        se = math.sqrt(p[k] * (1 - p[k]) / n)  # binomial standard error of the interval's mass
        assert abs(ink.double().mean() - p[k]) <= 4 * se
    assert inside.all()
    # intervals are disjoint and sorted
    iv = toy.UNIFORM3_INTERVALS
    assert len(iv) == 3 and all(iv[i][1] < iv[i + 1][0] for i in range(2))


@pytest.mark.parametrize("name,weights,means,stds", [
    ("gmm1d", toy.GMM1D_WEIGHTS, toy.GMM1D_MEANS, toy.GMM1D_STDS),
    ("bimodal1d", toy.BIMODAL1D_WEIGHTS, toy.BIMODAL1D_MEANS, toy.BIMODAL1D_STDS),
])
def test_1d_mixture_moments(name, weights, means, stds):
    w, m, s = (np.array(v, dtype=float) for v in (weights, means, stds))
    mean = (w * m).sum()
    var = (w * (s**2 + m**2)).sum() - mean**2
    n = 20000
    x = make_toy(name, n, seed=5)[:, 0].double().numpy()
    # sample mean has SE sqrt(var / n); accept 4 SE
    assert abs(x.mean() - mean) <= 4 * math.sqrt(var / n)
    # sample variance has SE sqrt((mu4 - var^2) / n); mu4 = central 4th moment of the mixture
    mu4 = (w * (3 * s**4 + 6 * s**2 * (m - mean) ** 2 + (m - mean) ** 4)).sum()
    assert abs(x.var() - var) <= 4 * math.sqrt((mu4 - var**2) / n)
    assert len(weights) == 2
    if name == "bimodal1d":
        assert weights[0] == weights[1] and means[0] == -means[1] and stds[0] == stds[1]


@pytest.mark.parametrize("name", ["gmm1d", "bimodal1d"])
def test_1d_log_prob_normalised(name):
    grid = torch.linspace(-12, 12, 24001, dtype=torch.float64)
    p = toy.log_prob(name, grid[:, None]).exp()
    assert abs(torch.trapezoid(p, grid).item() - 1.0) < 1e-6


def test_uniform3_log_prob():
    lp = toy.log_prob("uniform3", torch.tensor([[-2.5], [0.0], [2.5], [1.0], [-4.0]]))
    assert torch.allclose(lp[:3], torch.full((3,), -math.log(3.0), dtype=torch.float64))
    assert torch.isinf(lp[3:]).all()


@pytest.mark.parametrize("name", ["unbalanced_mixture", "8gaussians"])
def test_2d_log_prob_normalised(name):
    g = torch.linspace(-8, 8, 321, dtype=torch.float64)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    p = toy.log_prob(name, torch.stack([xx.flatten(), yy.flatten()], 1)).exp().reshape(321, 321)
    total = torch.trapezoid(torch.trapezoid(p, g, dim=1), g)
    assert abs(total.item() - 1.0) < 1e-6


def test_unknown_name_raises_with_hint():
    with pytest.raises(ConfigError) as e:
        make_toy("moon", 10)
    msg = str(e.value)
    assert "data.name" in msg and "'moon'" in msg and "did you mean 'moons'" in msg and "checkerboard" in msg
    with pytest.raises(ConfigError, match="data.name"):
        toy.toy_dim("nope")
    with pytest.raises(ConfigError, match="data.name"):
        toy.log_prob("moons", torch.zeros(2, 2))


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_bad_n_raises(n):
    with pytest.raises(ConfigError, match="data.n"):
        make_toy("moons", n)


def test_bad_seed_raises():
    with pytest.raises(ConfigError, match="seed"):
        make_toy("moons", 5, seed="a")
