"""Bridge matching (the drift-only baseline of AGM; docs/agm.md).

Per bridge sample i:  l_i(theta) = (1/d) || f_theta(x_{t_i}, t_i) - u_{t_i} ||^2,
baseline loss L = (1/B) sum_i l_i. Its minimiser is the Markovian projection E[u_t | x_t].
"""
from __future__ import annotations

import torch
from torch import Tensor

from agm.paths.bridge import BrownianBridge, PathSample
from agm.samplers.base import Field


def per_sample_mse(pred: Tensor, target: Tensor) -> Tensor:
    """(1/d) ||pred - target||^2 per sample, shape (B,)."""
    return (pred - target).pow(2).flatten(1).mean(dim=1)


def bridge_matching_loss(
    drift: Field,
    path: BrownianBridge,
    x0: Tensor,
    x1: Tensor,
    *,
    t: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, PathSample]:
    """Draw a bridge sample for each pair (x0[i], x1[i]) and return (per-sample losses l_i, the sample)."""
    s = path.sample(x0, x1, t, generator=generator)
    return per_sample_mse(drift(s.xt, s.t), s.target), s
