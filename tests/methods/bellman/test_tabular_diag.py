"""The tabular whitening transform and the breast_cancer diagnostics (experiments/bellman/tabular.py,
experiments/bellman/tabular_breast_cancer_diag.py; docs/bellman.md, issue 18)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

EXP = Path(__file__).resolve().parents[3] / "experiments" / "bellman"


def _load(name: str):
    if str(EXP) not in sys.path:
        sys.path.insert(0, str(EXP))
    spec = importlib.util.spec_from_file_location(f"_exp_{name}", EXP / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _correlated_rows(n: int = 400, d: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=g)
    a[:, -1] = a[:, 0] + 1e-2 * a[:, -1]  # a nearly collinear direction, as in breast_cancer
    return torch.randn(n, d, generator=g) @ a.T + 3.0


def test_whiten_has_identity_covariance_and_inverts():
    tab = _load("tabular")
    x = _correlated_rows().double()
    fwd, inv = tab.whitener(x, "whiten", ridge=0.0)
    z = fwd(x)
    assert torch.allclose(z.mean(0), torch.zeros(x.shape[1], dtype=x.dtype), atol=1e-8)
    assert torch.allclose(torch.cov(z.T), torch.eye(x.shape[1], dtype=x.dtype), atol=1e-6)
    assert torch.allclose(inv(z), x, atol=1e-8)


def test_isotropic_noise_in_whitened_space_is_covariance_shaped():
    """N(0, eps I) added in z is N(0, eps Sigma) in x: inverse(z + u) - inverse(z) = u A with A^T A = Sigma."""
    tab = _load("tabular")
    x = _correlated_rows().double()
    _, inv = tab.whitener(x, "whiten", ridge=0.0)
    d = x.shape[1]
    a = inv(torch.eye(d, dtype=x.dtype)) - inv(torch.zeros(1, d, dtype=x.dtype))  # rows: the images of the unit vectors
    assert torch.allclose(a.T @ a, torch.cov(x.T), rtol=1e-6, atol=1e-8)


def test_standard_transform_is_identity_and_bad_name_raises():
    tab = _load("tabular")
    x = _correlated_rows()
    fwd, inv = tab.whitener(x, "standard")
    assert fwd(x) is x and inv(x) is x
    with pytest.raises(ValueError):
        tab.whitener(x, "pca")


def test_spectrum_ratio_is_one_on_the_rows_and_sees_an_inflated_direction():
    diag = _load("tabular_breast_cancer_diag")
    x = _correlated_rows(d=6).float()
    out = diag.spectrum_and_blocks(x, x, x[:100], seed=0)
    assert all(abs(r - 1.0) < 1e-4 for r in out["var_ratio_gen_over_train"])
    noised = x + 0.3**0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    ratio = diag.spectrum_and_blocks(noised, x, x[:100], seed=0)["var_ratio_gen_over_train"]
    assert ratio[-1] > 10.0 * ratio[0]  # the flattest direction is inflated far more than the widest one
