"""Fréchet distance (closed forms), the FID Inception-v3 loader (architecture, local weights file, errors),
and the digits feature space."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from agm.errors import DataError
from agm.metrics.fid import FIDInceptionV3, fid, inception_features, load_fid_inception
from agm.metrics.frechet import (
    feature_statistics, frechet_distance, frechet_distance_features, gaussian_w2_closed_form,
)


def test_frechet_closed_forms():
    rng = np.random.default_rng(0)
    # commuting (diagonal) covariances: d^2 = ||mu1-mu2||^2 + sum (sqrt a - sqrt b)^2
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    s1, s2 = np.diag(rng.uniform(0.5, 2, 4)), np.diag(rng.uniform(0.5, 2, 4))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(gaussian_w2_closed_form(mu1, s1, mu2, s2), rel=1e-10)
    # rotation invariance: d(R S1 R^T, R S2 R^T) = d(S1, S2) for any orthogonal R (non-commuting case)
    a = rng.normal(size=(4, 4))
    s3 = a @ a.T + 0.1 * np.eye(4)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    d = frechet_distance(mu1, s1, mu2, s3)
    assert frechet_distance(q @ mu1, q @ s1 @ q.T, q @ mu2, q @ s3 @ q.T) == pytest.approx(d, rel=1e-9)
    # scalar case: (m1-m2)^2 + (s1 - s2)^2 with standard deviations s
    assert frechet_distance([1.0], [[4.0]], [0.0], [[1.0]]) == pytest.approx(1.0 + 1.0)
    assert frechet_distance(mu1, s3, mu1, s3) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(DataError, match="mismatched shapes"):
        frechet_distance(mu1, s1, mu2[:3], s2[:3, :3])


def test_frechet_from_samples_matches_population_value():
    # N(0, I) vs N(m, 4 I) in D = 3: d^2 = ||m||^2 + D (2 - 1)^2. With N = 20000 samples the estimate's
    # error is O(D / sqrt(N)) ~ 3 / 141 ~ 0.02 per term; a tolerance of 0.15 is > 5 such standard errors.
    rng = np.random.default_rng(1)
    m = np.array([1.0, 0.0, -1.0])
    f1 = rng.normal(size=(20000, 3))
    f2 = m + 2.0 * rng.normal(size=(20000, 3))
    assert frechet_distance_features(f1, f2) == pytest.approx(2.0 + 3.0, abs=0.15)
    mu, cov = feature_statistics(f1[:5])
    assert np.allclose(cov, np.cov(f1[:5], rowvar=False))  # unbiased N - 1 normaliser
    with pytest.raises(DataError, match="N >= 2"):
        feature_statistics(f1[:1])


def test_fid_inception_architecture_and_local_weights(tmp_path):
    torch.manual_seed(0)
    net = FIDInceptionV3()
    # torchvision's Inception3 without the aux head has 23,834,568 parameters with 1000 logits; the FID graph
    # has 1008 logits: + 8 * 2049
    assert sum(p.numel() for p in net.parameters()) == 23_834_568 + 8 * 2049
    path = tmp_path / "pt_inception.pth"
    torch.save(net.state_dict(), path)
    loaded = load_fid_inception(path)
    assert loaded.resize == 299
    loaded.resize = net.resize = 75  # the smallest input Inception-v3 accepts: keeps this CPU test fast
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    f = inception_features(loaded, x)
    assert f.shape == (3, 2048)
    torch.testing.assert_close(f, inception_features(net.eval(), x))
    g = inception_features(loaded, x[:, :1])  # grey is repeated to 3 channels
    torch.testing.assert_close(g, inception_features(loaded, x[:, :1].expand(-1, 3, -1, -1)))


def test_fid_wiring(monkeypatch):
    # fid() = Fréchet distance of the Gaussian fits of the Inception features; patched to 3-d features
    # (the 2048-d eigendecompositions take ~15 s on a loaded CPU) with a known answer: a shift by m gives ||m||^2
    import agm.metrics.fid as fidmod

    monkeypatch.setattr(fidmod, "inception_features", lambda net, x: x.reshape(x.shape[0], -1)[:, :3])
    x = torch.randn(50, 3, 1, 1, dtype=torch.float64)
    m = torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64).reshape(1, 3, 1, 1)
    assert fid(None, x + m, x) == pytest.approx(5.0, rel=1e-9)
    assert fid(None, x, feature_statistics(x.reshape(50, 3))) == pytest.approx(0.0, abs=1e-9)


def test_fid_weights_errors(tmp_path):
    with pytest.raises(DataError, match=r"missing\.pth.*does not exist.*pt_inception-2015-12-05"):
        load_fid_inception(tmp_path / "missing.pth")
    (tmp_path / "corrupt.pth").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"corrupt\.pth.*not a readable"):
        load_fid_inception(tmp_path / "corrupt.pth")
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(DataError, match=r"other\.pth.*does not match"):
        load_fid_inception(tmp_path / "other.pth")
