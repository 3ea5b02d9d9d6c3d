"""Energy distance (Szekely & Rizzo 2013, "Energy statistics", eq. (2.1)) with unbiased within-sample terms.

    E(X, Y) = 2 E||X - Y|| - E||X - X'|| - E||Y - Y'||,

estimated by 2/(mn) sum_{ij} ||x_i - y_j|| - 1/(m(m-1)) sum_{i != j} ||x_i - x_j||
- 1/(n(n-1)) sum_{i != j} ||y_i - y_j||. This is the squared energy distance; scipy's
``scipy.stats.energy_distance`` returns the square root of the V-statistic version (divides by m^2, n^2).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from agm.tensors import ArrayLike, subsample
from agm.metrics.mmd import as_pair, blockwise_sum, check_max_samples


def _dist(d2: Tensor) -> Tensor:
    return torch.sqrt(d2)


def energy_distance(x: ArrayLike, y: ArrayLike, *, max_samples: Optional[int] = 4000, seed: int = 0) -> float:
    """Unbiased (U-statistic) squared energy distance 2E|X-Y| - E|X-X'| - E|Y-Y'| (Szekely & Rizzo 2013).

    Each sample is subsampled to at most ``max_samples`` points with a fixed ``seed``. Can be slightly
    negative when the distributions are equal (unbiased). Inputs: tensors or arrays (N, D) (images are
    flattened); DataError on mismatched D or non-finite values.
    """
    check_max_samples(max_samples)
    a, b = as_pair(x, y)
    a = subsample(a, max_samples, seed)
    b = subsample(b, max_samples, seed + 1)
    m, n = a.shape[0], b.shape[0]
    exy = blockwise_sum(a, b, _dist) / (m * n)
    exx = blockwise_sum(a, a, _dist, exclude_diagonal=True) / (m * (m - 1))
    eyy = blockwise_sum(b, b, _dist, exclude_diagonal=True) / (n * (n - 1))
    return float(2.0 * exy - exx - eyy)
