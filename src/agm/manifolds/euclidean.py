"""Euclidean space R^d with the manifold API (docs/flowmaps.md): exp_x(u) = x + u, log_x(y) = y - x.

With it, the generalised flow-map losses reduce to the Euclidean LSD/ESD/PSD losses of Boffi, Albergo and
Vanden-Eijnden (docs/flowmaps.md), which gives the tests a closed-form Gaussian oracle.
Prior: N(0, I).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from agm.errors import check_positive
from agm.manifolds.base import Manifold


class Euclidean(Manifold):
    """R^dim with the flat metric; dim >= 1."""

    name = "euclidean"

    def __init__(self, dim: int = 2) -> None:
        check_positive("manifold.dim", dim, integer=True)
        self.dim = self.ambient_dim = dim

    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        """x + u."""
        return x + u

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        """y - x."""
        return y - x

    def projx(self, x: Tensor) -> Tensor:
        """Identity."""
        return x

    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        """Identity."""
        return u

    def inner(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """Dot product."""
        return (u * v).sum(-1)

    def pairwise_dist(self, x: Tensor, y: Tensor) -> Tensor:
        """|x_i - y_j|."""
        return torch.cdist(x, y)


    def random_base(self, n: int, *, generator: torch.Generator | None = None, dtype=torch.float32) -> Tensor:
        """N(0, I)."""
        check_positive("n", n, integer=True)
        return torch.randn(n, self.dim, generator=generator, dtype=dtype)

    def tangent_frame(self, x: Tensor) -> Tensor:
        """The standard basis at every point, (B, dim, dim)."""
        return torch.eye(self.dim, dtype=x.dtype, device=x.device).expand(x.shape[0], -1, -1)

    def log_prior(self, x: Tensor) -> Tensor:
        """log N(x; 0, I)."""
        return -0.5 * (x * x).sum(-1) - 0.5 * self.dim * math.log(2 * math.pi)
