"""Maximum mean discrepancy with a sum of RBF kernels, plus the shared input/distance helpers of agm.metrics.

MMD^2 (Gretton et al. 2012, "A kernel two-sample test", Lemma 6, unbiased estimator):

    MMD_u^2 = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
              - 2/(mn) sum_{i, j} k(x_i, y_j),

with k(a, b) = sum_h exp(-||a - b||^2 / (2 h^2)) over a set of bandwidths h.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor

from agm.tensors import ArrayLike, subsample, validate_array
from agm.errors import ConfigError, DataError

DEFAULT_BANDWIDTH_MULTIPLIERS = (0.25, 0.5, 1.0, 2.0, 4.0)
CHUNK = 1024  # rows per block of the pairwise-distance matrices


def as_points(x: ArrayLike, field: str) -> Tensor:
    """Validate a sample for the metrics: float64 (N, D); images (N, C, H, W) are flattened to vectors.

    Raises DataError naming ``field`` for non-numeric dtypes, NaN/inf values, N < 2 (see
    :func:`agm.data.files.validate_array`).
    """
    return validate_array(x, field=field, flatten=True, dtype=torch.float64)


def as_pair(x: ArrayLike, y: ArrayLike, names: tuple[str, str] = ("x", "y")) -> tuple[Tensor, Tensor]:
    """Validate two samples with :func:`as_points` and check that their dimensions D agree."""
    a, b = as_points(x, names[0]), as_points(y, names[1])
    if a.shape[1] != b.shape[1]:
        raise DataError(
            f"{names[0]} has D={a.shape[1]} (shape {tuple(a.shape)}) but {names[1]} has D={b.shape[1]} "
            f"(shape {tuple(b.shape)}); accepted: samples of the same dimension"
        )
    return a, b


def check_max_samples(max_samples: Optional[int], field: str = "max_samples") -> None:
    """ConfigError unless max_samples is None or an integer >= 2."""
    if max_samples is None:
        return
    if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 2:
        raise ConfigError(f"{field}={max_samples!r} is not accepted; it must be an integer >= 2 or None")


def sq_distances(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances ||a_i - b_j||^2, shape (len(a), len(b)), clamped at 0."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return d.clamp_min_(0.0)


def blockwise_sum(a: Tensor, b: Tensor, fn: Callable[[Tensor], Tensor], *, exclude_diagonal: bool = False) -> float:
    """sum_{i, j} fn(||a_i - b_j||^2) computed in row blocks; fn maps a block of squared distances elementwise.

    With ``exclude_diagonal=True`` (a is b) the i == j terms are left out: their squared distances are
    set to exactly 0 and n * fn(0) is subtracted, so round-off on the diagonal cannot leak in.
    """
    total = 0.0
    for start in range(0, a.shape[0], CHUNK):
        d2 = sq_distances(a[start : start + CHUNK], b)
        if exclude_diagonal:
            idx = torch.arange(d2.shape[0])
            d2[idx, start + idx] = 0.0
        total += float(fn(d2).sum())
    if exclude_diagonal:
        total -= a.shape[0] * float(fn(torch.zeros(1, 1, dtype=a.dtype)).sum())
    return total


def median_distance(x: Tensor, y: Tensor, max_points: int = 1000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance over the pooled sample (at most ``max_points`` points, i < j; lower median)."""
    z = subsample(torch.cat([x, y], 0), max_points, seed)
    d2 = sq_distances(z, z)
    iu = torch.triu_indices(len(z), len(z), offset=1)
    med = float(d2[iu[0], iu[1]].median().sqrt())
    return med


def mmd(
    x: ArrayLike,
    y: ArrayLike,
    bandwidths: Optional[Sequence[float]] = None,
    *,
    max_samples: Optional[int] = 4000,
    seed: int = 0,
) -> float:
    """Unbiased squared MMD (Gretton et al. 2012, Lemma 6) with k = sum_h exp(-||a-b||^2 / (2 h^2)).

    ``bandwidths``: the kernel widths h; default: the median pairwise distance of the pooled sample
    (estimated on at most 1000 pooled points) times (0.25, 0.5, 1, 2, 4) (the median heuristic;
    the multipliers are our choice, fixed by the project brief). Each sample is
    subsampled to at most ``max_samples`` points with a fixed ``seed``. The estimate is unbiased
    and so can be slightly negative when the two distributions are equal. Inputs: tensors or arrays
    (N, D) (images are flattened); DataError on mismatched D or non-finite values.
    """
    check_max_samples(max_samples)
    a, b = as_pair(x, y)
    a = subsample(a, max_samples, seed)
    b = subsample(b, max_samples, seed + 1)
    if bandwidths is None:
        med = median_distance(a, b, seed=seed)
        if med <= 0:
            med = 1.0  # all pooled points coincide: any width gives MMD = 0
        hs = torch.tensor(DEFAULT_BANDWIDTH_MULTIPLIERS, dtype=torch.float64) * med
    else:
        try:
            hs = torch.as_tensor([float(h) for h in bandwidths], dtype=torch.float64)
        except (TypeError, ValueError) as e:
            raise ConfigError(f"bandwidths={bandwidths!r} is not accepted; it must be a sequence of positive numbers") from e
        if hs.numel() == 0 or not bool((hs > 0).all()) or not bool(torch.isfinite(hs).all()):
            raise ConfigError(f"bandwidths={list(bandwidths)!r} is not accepted; it must be a non-empty sequence of positive numbers")
    gam = 1.0 / (2.0 * hs**2)

    def kern(d2: Tensor) -> Tensor:
        out = torch.zeros_like(d2)
        for g in gam.tolist():
            out += torch.exp(-g * d2)
        return out

    m, n = a.shape[0], b.shape[0]
    kxx = blockwise_sum(a, a, kern, exclude_diagonal=True) / (m * (m - 1))
    kyy = blockwise_sum(b, b, kern, exclude_diagonal=True) / (n * (n - 1))
    kxy = blockwise_sum(a, b, kern) / (m * n)
    return float(kxx + kyy - 2.0 * kxy)
