"""Sample-quality metrics: MMD, exact W2 (POT), energy distance, precision/recall/density/coverage.

All metrics accept torch tensors or numpy arrays of shape (N, D) (images (N, C, H, W) are flattened)
and raise :class:`agm.errors.DataError` on mismatched dimensions or non-finite values.
"""
from __future__ import annotations

from typing import Optional

from agm.tensors import ArrayLike, subsample
from agm.metrics.energy import energy_distance
from agm.metrics.ess import effective_sample_size
from agm.metrics.mmd import as_pair, check_max_samples, mmd
from agm.metrics.prdc import prdc
from agm.metrics.wasserstein import wasserstein2

METRIC_NAMES = ("w2", "mmd", "energy", "precision", "recall", "density", "coverage")


def evaluate(samples: ArrayLike, data: ArrayLike, *, max_samples: Optional[int] = 2000, seed: int = 0, k: int = 5) -> dict[str, float]:
    """All sample metrics of ``samples`` against reference ``data``.

    Returns {'w2', 'mmd', 'energy', 'precision', 'recall', 'density', 'coverage'}: exact W2
    (:func:`wasserstein2`), unbiased squared MMD (:func:`mmd`), unbiased squared energy distance
    (:func:`energy_distance`) and PRDC with ``k`` neighbours (:func:`prdc`, ``data`` as real). Every
    metric sees the same subsample: at most ``max_samples`` points per set, drawn once with ``seed``.
    """
    check_max_samples(max_samples)
    x, y = as_pair(samples, data, ("samples", "data"))
    x = subsample(x, max_samples, seed)
    y = subsample(y, max_samples, seed + 1)
    out = {
        "w2": wasserstein2(x, y, max_samples=None),
        "mmd": mmd(x, y, max_samples=None, seed=seed),
        "energy": energy_distance(x, y, max_samples=None),
    }
    pr = prdc(y, x, k=k, max_samples=None)
    out.update(pr)
    return {name: out[name] for name in METRIC_NAMES}


__all__ = ["METRIC_NAMES", "effective_sample_size", "energy_distance", "evaluate", "mmd", "prdc", "wasserstein2"]
