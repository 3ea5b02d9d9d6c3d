"""Precision, recall, density and coverage with k-NN balls (Naeem et al. 2020, "Reliable fidelity and
diversity metrics for generative models", eqs. (1)-(4); precision/recall from Kynkaanniemi et al. 2019).

With B(z, r) the open ball of radius r around z and NND_k(z) the distance from z to its k-th nearest
neighbour within its own set (excluding z itself), for real X_1..X_N and fake Y_1..Y_M:

    precision = 1/M sum_j 1[ exists i: Y_j in B(X_i, NND_k(X_i)) ]
    recall    = 1/N sum_i 1[ exists j: X_i in B(Y_j, NND_k(Y_j)) ]
    density   = 1/(kM) sum_j sum_i 1[ Y_j in B(X_i, NND_k(X_i)) ]
    coverage  = 1/N sum_i 1[ min_j ||X_i - Y_j|| < NND_k(X_i) ]

Balls are open (strict <), as in the authors' reference code, so identical sets give density exactly 1
when there are no distance ties.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from agm.tensors import ArrayLike, subsample
from agm.errors import ConfigError
from agm.metrics.mmd import CHUNK, as_pair, check_max_samples, sq_distances


def knn_radii(x: Tensor, k: int) -> Tensor:
    """NND_k(x_i): Euclidean distance from each x_i to its k-th nearest neighbour in x, excluding itself."""
    return knn_sq_radii(x, k).sqrt()


def knn_sq_radii(x: Tensor, k: int) -> Tensor:
    """NND_k(x_i)^2, the squared k-NN radius; comparisons are made on squared distances so that the
    k-th neighbour itself (at distance exactly NND_k) stays outside the open ball."""
    out = torch.empty(x.shape[0], dtype=x.dtype)
    for start in range(0, x.shape[0], CHUNK):
        d2 = sq_distances(x[start : start + CHUNK], x)
        idx = torch.arange(d2.shape[0])
        d2[idx, start + idx] = 0.0  # self at distance exactly 0, so index 0 of the sort is (a copy of) self
        out[start : start + CHUNK] = torch.topk(d2, k + 1, dim=1, largest=False).values[:, k]
    return out


def prdc(
    real: ArrayLike,
    fake: ArrayLike,
    k: int = 5,
    *,
    max_samples: Optional[int] = 10000,
    seed: int = 0,
) -> dict[str, float]:
    """Precision, recall, density, coverage of ``fake`` against ``real`` (Naeem et al. 2020, eqs. (1)-(4)).

    ``k``: neighbours defining the ball radii (paper default 5); needs k < number of points in each set.
    Each set is subsampled to at most ``max_samples`` points with a fixed ``seed``. Distances are
    computed in row blocks. Inputs: tensors or arrays (N, D) (images flattened); DataError on
    mismatched D or non-finite values, ConfigError on a bad k.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k={k!r} is not accepted; it must be an integer >= 1")
    check_max_samples(max_samples)
    r, f = as_pair(real, fake, ("real", "fake"))
    r = subsample(r, max_samples, seed)
    f = subsample(f, max_samples, seed + 1)
    n, m = r.shape[0], f.shape[0]
    if k >= min(n, m):
        raise ConfigError(f"k={k} is not accepted for {n} real and {m} fake points; it must be < {min(n, m)}")
    rad_r2 = knn_sq_radii(r, k)
    rad_f2 = knn_sq_radii(f, k)

    fake_in_any = torch.zeros(m, dtype=torch.bool)  # precision
    density_count = torch.zeros((), dtype=torch.float64)
    real_in_any = torch.zeros(n, dtype=torch.bool)  # recall
    real_covered = torch.zeros(n, dtype=torch.bool)  # coverage
    for start in range(0, n, CHUNK):
        sl = slice(start, start + CHUNK)
        d2 = sq_distances(r[sl], f)  # (rows of real, m)
        inside_real_ball = d2 < rad_r2[sl, None]  # fake j inside ball of real i
        fake_in_any |= inside_real_ball.any(0)
        density_count += inside_real_ball.sum()
        real_in_any[sl] = (d2 < rad_f2[None, :]).any(1)  # real i inside ball of some fake j
        real_covered[sl] = d2.min(1).values < rad_r2[sl]
    return {
        "precision": float(fake_in_any.double().mean()),
        "recall": float(real_in_any.double().mean()),
        "density": float(density_count / (k * m)),
        "coverage": float(real_covered.double().mean()),
    }
