"""Exact 2-Wasserstein distance between empirical measures via optimal transport (POT's network simplex).

    W2(mu_x, mu_y) = ( min_{P in U(a, b)} sum_{ij} P_ij ||x_i - y_j||^2 )^{1/2},

a = 1/m, b = 1/n uniform weights, U(a, b) the couplings with those marginals (Villani 2009, Def. 6.1;
solved exactly by ``ot.emd2``, Bonneel et al. 2011).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np

from agm.tensors import ArrayLike, subsample
from agm.metrics.mmd import as_pair, check_max_samples, sq_distances

EMD_MAX_ITER = 10_000_000  # POT's default (100k) stops early on 2000 x 2000 problems


def wasserstein2(x: ArrayLike, y: ArrayLike, max_samples: Optional[int] = 2000, seed: int = 0) -> float:
    """Exact W2 between the empirical measures of x and y (squared Euclidean ground cost, uniform weights).

    Each sample is first subsampled to at most ``max_samples`` points with a fixed ``seed`` (the cost
    of the exact solver grows roughly cubically). Returns sqrt of the optimal cost of ``ot.emd2``.
    Inputs: tensors or arrays (N, D) (images are flattened); DataError on mismatched D or non-finite values.
    """
    check_max_samples(max_samples)
    a, b = as_pair(x, y)
    a = subsample(a, max_samples, seed)
    b = subsample(b, max_samples, seed + 1)
    cost = sq_distances(a, b).numpy()
    if not np.isfinite(cost).all():
        from agm.errors import DataError

        raise DataError("wasserstein2: squared distances overflow (samples are finite but too large, e.g. a sampler "
                        f"that escaped; largest |value| {max(float(a.abs().max()), float(b.abs().max())):.3g})")
    import ot  # POT (a declared dependency) imports scikit-learn: about 2 s, so only when a W2 is computed

    wa = np.full(a.shape[0], 1.0 / a.shape[0])
    wb = np.full(b.shape[0], 1.0 / b.shape[0])
    val, log = ot.emd2(wa, wb, cost, numItermax=EMD_MAX_ITER, log=True)
    if log.get("warning"):
        raise RuntimeError(f"wasserstein2: the exact solver did not finish ({log['warning']}); the value would be wrong")
    return math.sqrt(max(float(val), 0.0))
