"""The flat torus T^d = [0, 2 pi)^d with the Euclidean metric (docs/flowmaps.md).

    exp_x(u) = (x + u) mod 2 pi
    log_x(y) = atan2(sin(y - x), cos(y - x))        (componentwise wrapped difference in (-pi, pi])
    d(x, y)  = |log_x y|,  projx = mod 2 pi,  proju = identity
Coordinates are angles in radians; ambient_dim = dim. Network features are (cos x, sin x), which are
continuous across the seam (docs/flowmaps.md). Prior: uniform. The cut locus is a wrapped difference of +-pi.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from agm.errors import check_positive
from agm.manifolds.base import Manifold

TWO_PI = 2 * math.pi


class FlatTorus(Manifold):
    """T^dim = (R / 2 pi Z)^dim with coordinates in [0, 2 pi); dim >= 1 (T^2: protein torsions, T^7: RNA)."""

    name = "torus"

    def __init__(self, dim: int = 2) -> None:
        check_positive("manifold.dim", dim, integer=True)
        self.dim = dim
        self.ambient_dim = dim

    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        """exp_x(u) = (x + u) mod 2 pi."""
        return torch.remainder(x + u, TWO_PI)

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        """log_x(y) = atan2(sin(y - x), cos(y - x))."""
        d = y - x
        return torch.atan2(torch.sin(d), torch.cos(d))

    def pairwise_dist(self, x: Tensor, y: Tensor) -> Tensor:
        """d(x_i, y_j) = |wrap(y_j - x_i)| with wrap(a) = pi - |(a mod 2 pi) - pi| per coordinate."""
        a = torch.remainder(y[None, :, :] - x[:, None, :], TWO_PI)
        w = math.pi - (a - math.pi).abs()
        return w.norm(dim=-1)

    def projx(self, x: Tensor) -> Tensor:
        """x mod 2 pi."""
        return torch.remainder(x, TWO_PI)

    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        """Identity (every ambient vector is tangent)."""
        return u

    def inner(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """Flat metric: the dot product."""
        return (u * v).sum(-1)

    def constraint_error(self, x: Tensor) -> Tensor:
        """max_i distance of x_i outside [0, 2 pi] (mod can round up to exactly 2 pi in float32)."""
        return torch.clamp(torch.maximum(-x, x - TWO_PI), min=0).amax(-1)

    def constraint(self) -> str:
        return "angles must be in radians in [0, 2 pi)"

    def random_base(self, n: int, *, generator: torch.Generator | None = None, dtype=torch.float32) -> Tensor:
        """Uniform on [0, 2 pi)^d."""
        check_positive("n", n, integer=True)
        return TWO_PI * torch.rand(n, self.dim, generator=generator, dtype=dtype)

    def tangent_frame(self, x: Tensor) -> Tensor:
        """The standard basis at every point, (B, dim, dim)."""
        return torch.eye(self.dim, dtype=x.dtype, device=x.device).expand(x.shape[0], -1, -1)

    def features(self, x: Tensor) -> Tensor:
        """(cos x, sin x): 2 d features, continuous on the torus."""
        return torch.cat([torch.cos(x), torch.sin(x)], dim=-1)

    def log_volume(self) -> float:
        """log (2 pi)^d."""
        return self.dim * math.log(TWO_PI)
