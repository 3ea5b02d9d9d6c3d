"""Precision / recall / density / coverage (agm.metrics.prdc, Naeem et al. 2020) vs hand and brute force."""
import importlib

import numpy as np
import pytest
import torch

from agm.errors import ConfigError, DataError
from agm.metrics import prdc

mmd_mod = importlib.import_module("agm.metrics.mmd")
prdc_mod = importlib.import_module("agm.metrics.prdc")


def brute_prdc(real, fake, k):
    """Direct transcription of Naeem et al. 2020 eqs. (1)-(4) with open balls."""
    drr = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
    dff = np.sqrt(((fake[:, None] - fake[None]) ** 2).sum(-1))
    drf = np.sqrt(((real[:, None] - fake[None]) ** 2).sum(-1))
    rr = np.sort(drr, 1)[:, k]  # column 0 is the point itself
    rf = np.sort(dff, 1)[:, k]
    inside = drf < rr[:, None]  # (real i, fake j): fake j in ball of real i
    return {
        "precision": inside.any(0).mean(),
        "recall": (drf < rf[None, :]).any(1).mean(),
        "density": inside.sum() / (k * len(fake)),
        "coverage": (drf.min(1) < rr).mean(),
    }


def test_hand_computed_1d_case():
    # real {0,1,2,3}, fake {0.5, 10}, k = 1: real radii all 1; fake radii both 9.5.
    # precision: 0.5 is within 1 of real 0 -> yes; 10 -> no           => 1/2
    # recall: every real point is within 9.5 of fake 0.5              => 1
    # density: 0.5 lies in the balls of reals 0 and 1 -> 2 / (k * 2)  => 1
    # coverage: nearest fake within 1 for reals 0, 1 only             => 1/2
    real = np.array([[0.0], [1.0], [2.0], [3.0]])
    fake = np.array([[0.5], [10.0]])
    assert prdc(real, fake, k=1) == {"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 0.5}


def test_identical_sets():
    # Same set: each fake point is the centre of its own ball -> precision = recall = coverage = 1.
    # With open balls and no distance ties, the ball of real i holds exactly k fake points (the copy
    # of i and its k-1 nearer neighbours; the k-th lies on the boundary), so density = 1 exactly.
    x = torch.randn(500, 3, generator=torch.Generator().manual_seed(0))
    assert prdc(x, x.clone(), k=5) == pytest.approx({"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}, abs=1e-12)


def test_disjoint_far_sets_give_zero():
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(200, 2, generator=g), torch.randn(150, 2, generator=g) + 100.0
    assert prdc(real, fake, k=3) == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}


def test_matches_brute_force_with_chunking(monkeypatch):
    monkeypatch.setattr(mmd_mod, "CHUNK", 7)
    monkeypatch.setattr(prdc_mod, "CHUNK", 7)
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(40, 3)), rng.normal(size=(31, 3)) * 1.3 + 0.4
    ref = brute_prdc(real, fake, 3)
    got = prdc(real, fake, k=3)
    for key in ref:
        assert got[key] == pytest.approx(ref[key], abs=1e-12), key


def test_same_distribution_statistics():
    # real, fake iid from one law with M = N: E[coverage] = 1 - prod_{i=1..k} (N - i) / (2N - i)
    # ~ 1 - (1/2)^k = 0.969 for k = 5 (Naeem et al. 2020, Sec. 4); E[density] = 1.
    # Both are averages of N weakly dependent indicators / counts; with N = 2000 their SDs are
    # ~ sqrt(0.03/2000) ~ 0.004 and ~0.02, so tolerances 0.03 and 0.1 are > 5 SD.
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(2000, 2, generator=g), torch.randn(2000, 2, generator=g)
    out = prdc(real, fake, k=5)
    assert abs(out["coverage"] - (1 - 0.5**5)) < 0.03
    assert abs(out["density"] - 1.0) < 0.1
    assert out["precision"] > 0.9 and out["recall"] > 0.9


@pytest.mark.parametrize("k", [0, -1, 2.0, True, 4])
def test_bad_k(k):
    with pytest.raises(ConfigError, match="k="):
        prdc(np.zeros((4, 2)), np.ones((6, 2)), k=k)


def test_bad_inputs():
    with pytest.raises(DataError, match="^real has D=2.*fake has D=3"):
        prdc(np.zeros((8, 2)), np.zeros((8, 3)))
    with pytest.raises(DataError, match="^fake has"):
        prdc(np.zeros((8, 2)), np.full((8, 2), np.inf))
