"""Cross-checks of agm.metrics against independent implementations (issue 16, item 13).

References (test-only, the ``dev`` extra): ``prdc`` (Naeem et al. 2020's own package) for precision /
recall / density / coverage; scikit-learn's ``rbf_kernel`` for MMD; SciPy's ``energy_distance`` (1-D) and
``cdist`` for the energy distance. No network is used.
"""
import numpy as np
import pytest
import torch

from agm.metrics import energy_distance, mmd, prdc


def _pair(d, n=300, m=250, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(m, d)) * 1.3 + 0.4
    return x, y


@pytest.mark.parametrize("d,k", [(2, 5), (8, 3), (30, 10)])
def test_prdc_matches_the_prdc_package(d, k):
    compute_prdc = pytest.importorskip("prdc").compute_prdc
    real, fake = _pair(d, seed=d)
    ref = compute_prdc(real_features=real, fake_features=fake, nearest_k=k)
    ours = prdc(real, fake, k=k, max_samples=None)
    for name in ("precision", "recall", "density", "coverage"):
        assert ours[name] == pytest.approx(float(ref[name]), abs=1e-12), name


@pytest.mark.parametrize("d", [1, 3, 16])
def test_mmd_matches_sklearn_rbf_kernels(d):
    from sklearn.metrics.pairwise import rbf_kernel

    x, y = _pair(d, seed=10 + d)
    hs = [0.3, 1.0, 2.5]
    k = lambda a, b: sum(rbf_kernel(a, b, gamma=1.0 / (2 * h * h)) for h in hs)  # noqa: E731
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    m, n = len(x), len(y)
    ref = (kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2 * kxy.mean()
    assert mmd(x, y, bandwidths=hs, max_samples=None) == pytest.approx(ref, rel=1e-10, abs=1e-13)


def test_energy_distance_matches_scipy_in_1d():
    from scipy.stats import energy_distance as scipy_energy

    x, y = _pair(1, n=400, m=300, seed=3)
    m, n = len(x), len(y)
    ours = energy_distance(x, y, max_samples=None)  # U-statistic of 2E|X-Y| - E|X-X'| - E|Y-Y'|
    # SciPy returns the square root of the V-statistic (the diagonal zeros counted): convert exactly
    exx = np.abs(x - x.T).sum() / (m * (m - 1))
    eyy = np.abs(y - y.T).sum() / (n * (n - 1))
    v_stat = ours + exx / m + eyy / n
    assert np.sqrt(v_stat) == pytest.approx(scipy_energy(x[:, 0], y[:, 0]), rel=1e-10)


@pytest.mark.parametrize("d", [2, 20])
def test_energy_distance_matches_the_closed_form(d):
    from scipy.spatial.distance import cdist

    x, y = _pair(d, seed=20 + d)
    m, n = len(x), len(y)
    ref = 2 * cdist(x, y).mean() - cdist(x, x).sum() / (m * (m - 1)) - cdist(y, y).sum() / (n * (n - 1))
    assert energy_distance(torch.from_numpy(x), torch.from_numpy(y), max_samples=None) == pytest.approx(ref, rel=1e-10)
