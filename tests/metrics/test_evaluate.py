"""agm.metrics.evaluate: keys, consistency with the single metrics, subsampling, input checks."""
import numpy as np
import pytest
import torch

from agm.data.files import subsample
from agm.errors import ConfigError, DataError
from agm.metrics import METRIC_NAMES, energy_distance, evaluate, mmd, prdc, wasserstein2


def test_keys_and_consistency():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(300, 2, generator=g), torch.randn(250, 2, generator=g) + 0.2
    out = evaluate(x, y, max_samples=200, seed=1)
    assert tuple(out) == METRIC_NAMES == ("w2", "mmd", "energy", "precision", "recall", "density", "coverage")
    assert all(isinstance(v, float) for v in out.values())
    xs, ys = subsample(x.double(), 200, 1), subsample(y.double(), 200, 2)
    assert out["w2"] == pytest.approx(wasserstein2(xs, ys, max_samples=None), abs=1e-12)
    assert out["mmd"] == pytest.approx(mmd(xs, ys, max_samples=None, seed=1), abs=1e-12)
    assert out["energy"] == pytest.approx(energy_distance(xs, ys, max_samples=None), abs=1e-12)
    pr = prdc(ys, xs, k=5, max_samples=None)  # data is the real set
    for k in pr:
        assert out[k] == pytest.approx(pr[k], abs=1e-12)
    assert out == evaluate(x, y, max_samples=200, seed=1)


def test_same_vs_shifted_ranking():
    g = torch.Generator().manual_seed(1)
    data = torch.randn(600, 2, generator=g)
    good, bad = torch.randn(600, 2, generator=g), torch.randn(600, 2, generator=g) + 2.0
    a, b = evaluate(good, data), evaluate(bad, data)
    for key in ("w2", "mmd", "energy"):
        assert a[key] < b[key], key
    for key in ("precision", "recall", "density", "coverage"):
        assert a[key] > b[key], key


def test_images_and_numpy():
    g = torch.Generator().manual_seed(2)
    imgs = torch.rand(50, 1, 3, 3, generator=g)
    flat = imgs.reshape(50, 9).numpy()
    assert evaluate(imgs, imgs[:40]) == evaluate(flat, flat[:40])


def test_bad_inputs():
    with pytest.raises(DataError, match="^samples has D=2.*data has D=3"):
        evaluate(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(DataError, match="^data has"):
        evaluate(np.zeros((5, 2)), np.full((5, 2), np.nan))
    with pytest.raises(ConfigError, match="max_samples"):
        evaluate(np.zeros((5, 2)), np.zeros((5, 2)), max_samples=-1)
