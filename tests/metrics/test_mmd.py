"""Unbiased multi-bandwidth RBF MMD^2 (agm.metrics.mmd) against closed forms and brute force."""
import importlib
import math

import numpy as np
import pytest
import torch

from agm.errors import ConfigError, DataError
from agm.metrics import mmd

mmd_mod = importlib.import_module("agm.metrics.mmd")  # the attribute agm.metrics.mmd is the function


def gaussian_mmd2(delta2: float, s: float, h: float, d: int) -> float:
    """Closed form for P = N(0, s^2 I_d), Q = N(delta, s^2 I_d), k = exp(-|a-b|^2 / (2h^2)):
    E k(X, X') = c, E k(X, Y) = c exp(-|delta|^2 / (2 (h^2 + 2 s^2))), c = (h^2 / (h^2 + 2 s^2))^(d/2)."""
    c = (h**2 / (h**2 + 2 * s**2)) ** (d / 2)
    return 2 * c * (1 - math.exp(-delta2 / (2 * (h**2 + 2 * s**2))))


def _gauss(n, d, g, shift=0.0):
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x[:, 0] += shift
    return x


def test_matches_brute_force_with_chunking(monkeypatch):
    monkeypatch.setattr(mmd_mod, "CHUNK", 7)  # several row blocks, diagonal crossing block edges
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(23, 3)), rng.normal(size=(17, 3)) + 0.3
    hs = [0.5, 2.0]

    def k(a, b):
        d2 = ((a[:, None] - b[None]) ** 2).sum(-1)
        return sum(np.exp(-d2 / (2 * h * h)) for h in hs)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m, n = len(x), len(y)
    ref = (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()
    assert abs(mmd(x, y, bandwidths=hs) - ref) < 1e-12


def test_default_bandwidths_are_median_heuristic():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 2)), rng.normal(size=(30, 2))
    z = np.concatenate([x, y])
    d = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))
    med = np.median(d[np.triu_indices(len(z), 1)])
    expected = mmd(x, y, bandwidths=[med * c for c in (0.25, 0.5, 1, 2, 4)])
    assert abs(mmd(x, y) - expected) < 1e-12


def test_unbiased_under_null_and_closed_form_under_shift():
    # R independent replicates; the mean of R estimates has standard error SD/sqrt(R) and we accept
    # |mean - truth| <= 4 SE (a normal-approximation test, false-failure prob. ~6e-5).
    R, n, h = 30, 200, 1.0
    g = torch.Generator().manual_seed(0)
    null = torch.tensor([mmd(_gauss(n, 2, g), _gauss(n, 2, g), bandwidths=[h]) for _ in range(R)])
    se = null.std().item() / math.sqrt(R)
    assert abs(null.mean().item()) <= 4 * se
    # the test has power against the biased V-statistic, whose bias here is 2 (1 - c) / n
    c = (h**2 / (h**2 + 2)) ** 1.0
    assert 4 * se < 2 * (1 - c) / n
    shifted = torch.tensor([mmd(_gauss(n, 2, g), _gauss(n, 2, g, 1.0), bandwidths=[h]) for _ in range(R)])
    truth = gaussian_mmd2(1.0, 1.0, h, 2)
    assert abs(shifted.mean().item() - truth) <= 4 * shifted.std().item() / math.sqrt(R)


def test_null_bound_and_detects_shift():
    # Under P = Q, MMD_u^2 is a degenerate U-statistic with kernel h(z, z') of range [-2K, 2K]
    # (K kernels each in [0, 1]), so Var = 2 E[h^2] / (n (n - 1)) <= 2 (2K)^2 / (n (n - 1)).
    # Chebyshev at 6 SD: |MMD_u^2| <= bound with prob. >= 1 - 1/36.
    n, hs = 1000, [0.5, 1.0, 2.0, 4.0]
    bound = 6 * 2 * len(hs) * math.sqrt(2 / (n * (n - 1)))
    g = torch.Generator().manual_seed(1)
    assert abs(mmd(_gauss(n, 2, g), _gauss(n, 2, g), bandwidths=hs)) <= bound
    x, y = _gauss(n, 2, g), _gauss(n, 2, g, 1.0)
    assert mmd(x, y, bandwidths=hs) > bound
    assert sum(gaussian_mmd2(1.0, 1.0, h, 2) for h in hs) > 2 * bound  # population value is far above it
    assert mmd(x, y) > bound  # default (median) bandwidths


def test_subsampling_and_identical_input():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(300, 2, generator=g)
    assert mmd(x, x + 0.0, max_samples=None) < 0  # unbiased: same set gives a small negative value
    assert mmd(x, x, max_samples=50, seed=3) == mmd(x, x, max_samples=50, seed=3)
    c = torch.zeros(10, 2)
    assert mmd(c, c) == 0.0  # all points equal: the median is 0, handled


@pytest.mark.parametrize("bw", [[], [0.0], [-1.0], ["a"], [float("nan")]])
def test_bad_bandwidths(bw):
    with pytest.raises(ConfigError, match="bandwidths"):
        mmd(np.zeros((4, 2)), np.ones((4, 2)), bandwidths=bw)


def test_bad_inputs():
    with pytest.raises(DataError, match="D=1.*D=2"):
        mmd(np.zeros((4, 1)), np.zeros((4, 2)))
    with pytest.raises(DataError, match="^x has 1 of 4 rows"):
        mmd(np.array([[0.0], [np.inf], [1.0], [2.0]]), np.zeros((4, 1)))
    with pytest.raises(ConfigError, match="max_samples"):
        mmd(np.zeros((4, 1)), np.zeros((4, 1)), max_samples=0)
