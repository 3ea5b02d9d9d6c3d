"""The library's one effective sample size of importance weights (used by AGM's weights, EFM, QIPO, steering)."""
from __future__ import annotations

from torch import Tensor


def effective_sample_size(weights: Tensor, *, normalised: bool = False, dim: int | None = None) -> Tensor:
    """The library's one effective sample size of importance weights (any positive scale), as a 0-d tensor.

    ESS = (sum_i w_i)^2 / sum_i w_i^2: between 1 (one weight dominates) and B (uniform weights); it equals
    1 / sum_i g_i^2 for weights g normalised to sum to one. ``normalised=True`` divides by B = w.numel(),
    giving the fraction ESS / B in [1/B, 1]. ``dim``: one ESS per slice along the other axes (e.g. dim=-1 for
    the per-state weights of QIPO, (S, K) -> (S,)); None: over all entries. Computed without gradient in
    float64; ``float()`` it to log it.
    """
    w = weights.detach().double()
    if dim is None:
        w, dim = w.reshape(-1), 0
    ess = w.sum(dim) ** 2 / (w * w).sum(dim)
    return ess / w.shape[dim] if normalised else ess
