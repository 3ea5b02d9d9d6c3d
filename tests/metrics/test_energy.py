"""Unbiased squared energy distance (agm.metrics.energy_distance) vs scipy, brute force, closed form."""
import importlib
import math

import numpy as np
import pytest
import scipy.stats
import torch

from agm.errors import DataError
from agm.metrics import energy_distance

mmd_mod = importlib.import_module("agm.metrics.mmd")  # the attribute agm.metrics.mmd is the function


def _pair_mean(a, b, exclude_diag):
    d = np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1))
    if exclude_diag:
        return (d.sum() - np.trace(d)) / (len(a) * (len(a) - 1))
    return d.mean()


def test_matches_brute_force_u_statistic(monkeypatch):
    monkeypatch.setattr(mmd_mod, "CHUNK", 5)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(19, 3)), rng.normal(size=(12, 3)) * 2
    ref = 2 * _pair_mean(x, y, False) - _pair_mean(x, x, True) - _pair_mean(y, y, True)
    assert abs(energy_distance(x, y) - ref) < 1e-12


def test_matches_scipy_after_v_to_u_conversion():
    # scipy returns sqrt(2 E|X-Y| - E|X-X'| - E|Y-Y'|) with V-statistics (divide by m^2). The
    # U-statistic within-sample mean is m/(m-1) times the V one, so
    # scipy^2 = ours + E_U|X-X'| / m + E_U|Y-Y'| / n.
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=300), rng.normal(0.5, 1.5, size=250)
    ours = energy_distance(x, y, max_samples=None)
    exx, eyy = _pair_mean(x[:, None], x[:, None], True), _pair_mean(y[:, None], y[:, None], True)
    sp = scipy.stats.energy_distance(x, y)
    assert abs(sp**2 - (ours + exx / len(x) + eyy / len(y))) < 1e-10


def test_unbiased_vs_gaussian_closed_form():
    # X ~ N(0, s^2), Y ~ N(delta, s^2): X - Y ~ N(-delta, 2 s^2), so with sig = s sqrt(2)
    # E|X-Y| = sig sqrt(2/pi) exp(-delta^2 / (2 sig^2)) + delta (1 - 2 Phi(-delta / sig)), E|X-X'| = 2 s / sqrt(pi).
    # Mean of R replicate estimates must be within 4 standard errors (SD / sqrt(R)) of the truth.
    s, R, n = 1.0, 30, 200
    g = torch.Generator().manual_seed(2)
    sig = s * math.sqrt(2)
    ses = {}
    for delta in (0.0, 1.0):
        exy = sig * math.sqrt(2 / math.pi) * math.exp(-(delta**2) / (2 * sig**2)) + delta * (1 - 2 * scipy.stats.norm.cdf(-delta / sig))
        truth = 2 * exy - 2 * (2 * s / math.sqrt(math.pi))
        est = torch.tensor([
            energy_distance(s * torch.randn(n, 1, generator=g, dtype=torch.float64),
                            delta + s * torch.randn(n, 1, generator=g, dtype=torch.float64))
            for _ in range(R)
        ])
        ses[delta] = est.std().item() / math.sqrt(R)
        assert abs(est.mean().item() - truth) <= 4 * ses[delta], (delta, est.mean(), truth)
    # power against the V-statistic: its bias under the null is E|X-X'| (1/m + 1/n) = 2 (2s/sqrt(pi)) / n
    assert 4 * ses[0.0] < 2 * (2 * s / math.sqrt(math.pi)) / n


def test_bad_inputs():
    with pytest.raises(DataError, match="D=2.*D=1"):
        energy_distance(np.zeros((4, 2)), np.zeros((4, 1)))
    with pytest.raises(DataError, match="NaN/inf"):
        energy_distance(np.zeros((4, 2)), np.full((4, 2), np.nan))
