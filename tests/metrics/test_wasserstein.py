"""Exact W2 (agm.metrics.wasserstein2) against sorted-quantile and brute-force ground truths."""
import itertools
import math

import numpy as np
import pytest
import torch

from agm.errors import ConfigError, DataError
from agm.metrics import wasserstein2


def test_1d_matches_sorted_quantile_formula():
    # For equal-size 1-D samples the optimal coupling is monotone: W2^2 = mean_i (x_(i) - y_(i))^2.
    rng = np.random.default_rng(0)
    x = rng.normal(0.0, 1.0, 400)
    y = rng.standard_t(3, 400) + 0.7
    exact = math.sqrt(np.mean((np.sort(x) - np.sort(y)) ** 2))
    assert abs(wasserstein2(x, y, max_samples=None) - exact) < 1e-6
    assert abs(wasserstein2(x[:, None], torch.from_numpy(y)[:, None], max_samples=None) - exact) < 1e-6


def test_2d_brute_force_over_permutations():
    # Uniform weights and equal sizes: by Birkhoff's theorem an optimal coupling is a permutation.
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(6, 2)), rng.normal(size=(6, 2)) + 0.5
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    best = min(cost[np.arange(6), list(p)].mean() for p in itertools.permutations(range(6)))
    assert abs(wasserstein2(x, y) - math.sqrt(best)) < 1e-9


def test_unequal_sizes_two_points():
    # x = {0, 2} (mass 1/2 each), y = {1} (mass 1): W2^2 = (1 + 1) / 2 = 1
    assert abs(wasserstein2(np.array([[0.0], [2.0]]), np.array([[1.0], [1.0], [1.0]])) - 1.0) < 1e-12


def test_translation_is_exact():
    # W2(mu, mu shifted by delta) = ||delta|| exactly (identity coupling is optimal).
    g = torch.Generator().manual_seed(2)
    x = torch.randn(300, 2, generator=g, dtype=torch.float64)
    delta = torch.tensor([1.5, -2.0], dtype=torch.float64)
    assert abs(wasserstein2(x, x + delta) - 2.5) < 1e-6


def test_gaussians_vs_closed_form():
    # W2(N(m1, s^2 I), N(m2, s^2 I)) = ||m1 - m2||. With independent samples, W2 of the empirical
    # measures decomposes exactly as W2^2 = ||xbar - ybar||^2 + W2^2(centred x, centred y) (Pythagoras
    # for W2), so |W2_hat - ||m1 - m2||| <= ||(xbar - ybar) - (m1 - m2)|| + W2(centred). The first term
    # has per-coordinate SD s*sqrt(2/n); the second is the empirical-measure bias, of order
    # s*sqrt(log n / n) in 2-D (Ajtai-Komlos-Tusnady); its constant measured over 5 replicates at
    # n = 1000 was about 2.4, we allow 4.
    n, s = 1000, 0.5
    g = torch.Generator().manual_seed(3)
    m1, m2 = torch.tensor([0.0, 0.0]), torch.tensor([2.0, 1.0])
    x = (m1 + s * torch.randn(n, 2, generator=g)).double()
    y = (m2 + s * torch.randn(n, 2, generator=g)).double()
    w = wasserstein2(x, y, max_samples=None)
    centred = wasserstein2(x - x.mean(0), y - y.mean(0), max_samples=None)
    mean_gap = (x.mean(0) - y.mean(0)).norm().item()
    assert abs(w**2 - (mean_gap**2 + centred**2)) < 1e-6
    tol = 4 * s * math.sqrt(2 / n) * math.sqrt(2) + 4 * s * math.sqrt(math.log(n) / n)
    assert abs(w - (m1 - m2).norm().item()) <= tol
    assert centred <= 4 * s * math.sqrt(math.log(n) / n)


def test_subsampling_deterministic_and_images_flattened():
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(500, 1, 2, 2, generator=g), torch.randn(400, 4, generator=g)
    a = wasserstein2(x, y, max_samples=100, seed=1)
    assert a == wasserstein2(x, y, max_samples=100, seed=1)
    assert a != wasserstein2(x, y, max_samples=100, seed=2)
    assert wasserstein2(x, y.reshape(400, 1, 2, 2), max_samples=100, seed=1) == a


def test_bad_inputs():
    with pytest.raises(DataError, match="D=2.*D=3"):
        wasserstein2(np.zeros((5, 2)), np.zeros((5, 3)))
    bad = np.ones((5, 2))
    bad[3, 1] = np.nan
    with pytest.raises(DataError, match=r"^y has 1 of 5 rows"):
        wasserstein2(np.ones((5, 2)), bad)
    with pytest.raises(ConfigError, match="max_samples=1"):
        wasserstein2(np.ones((5, 2)), np.ones((5, 2)), max_samples=1)


def test_w2_of_finite_but_overflowing_samples_is_an_error_not_zero():
    """POT used to return 0 (with an 'infeasible' warning) when the squared distances overflowed."""
    import pytest
    import torch

    from agm.errors import DataError
    from agm.metrics import wasserstein2

    x = torch.randn(50, 3)
    y = torch.randn(50, 3, dtype=torch.float64) * 1e160  # finite, its squares are not
    with pytest.raises(DataError, match="overflow"):
        wasserstein2(x, y)


def test_pot_is_imported_only_when_a_w2_is_computed():
    """POT (and the scikit-learn it imports, ~2 s) loads lazily: agm.metrics and the method packages import with
    ``ot`` unimportable, and W2 then fails only when called."""
    import subprocess
    import sys

    code = ("import sys\nsys.modules['ot'] = None  # any `import ot` now raises ImportError\n"
            "import numpy as np\nimport agm, agm.metrics, agm.metrics.geodesic\n"
            "from agm.methods import METHODS\n"
            "for m in METHODS:\n    __import__(f'agm.methods.{m}')\n"
            "try:\n    agm.metrics.wasserstein2(np.zeros((2, 1)), np.ones((2, 1)))\nexcept ImportError:\n    print('w2 needs ot')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "w2 needs ot"
