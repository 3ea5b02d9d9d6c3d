"""The unit sphere S^d embedded in R^(d+1) (docs/flowmaps.md).

    exp_x(u)  = cos(|u|) x + sin(|u|) u / |u|                 (sinc branch near |u| = 0)
    log_x(y)  = d(x, y) w / |w|,  w = P_x(y - x) = y - <x, y> x
    d(x, y)   = atan2(|w|, <x, y>)                            (stable form of arccos <x, y>, §B5)
    proj_x(u) = u - <x, u> x,   projx(x) = x / |x|
Prior: the uniform distribution (normalised Gaussian). log is undefined at the antipode -x (cut locus);
there |w| = 0 and the returned vector is 0.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from agm.errors import check_positive
from agm.manifolds.base import TINY, Manifold, safe_norm, sinc


class Sphere(Manifold):
    """S^dim = {x in R^(dim+1): |x| = 1}; dim >= 1 (dim = 2: the 2-sphere of the earth-science sets)."""

    name = "sphere"

    def __init__(self, dim: int = 2) -> None:
        check_positive("manifold.dim", dim, integer=True)
        self.dim = dim
        self.ambient_dim = dim + 1

    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        """exp_x(u) = cos|u| x + sinc|u| u; exact on S^d for tangent u (docs/flowmaps.md)."""
        n = safe_norm(u)
        return torch.cos(n) * x + sinc(n) * u

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        """log_x(y) = atan2(|w|, <x,y>) w / |w| with w = y - <x,y> x (docs/flowmaps.md)."""
        c = (x * y).sum(-1, keepdim=True)
        w = y - c * x
        nw = safe_norm(w)
        d = torch.atan2(nw, c)
        small = nw < 1e-4
        ratio = torch.where(small, 1 + nw * nw / 6, d / torch.where(small, torch.ones_like(nw), nw))
        # the Taylor branch holds near y = x (c > 0); at the antipode w = 0 and we return 0
        ratio = torch.where(small & (c < 0), torch.zeros_like(ratio), ratio)
        return ratio * w

    def sqdist(self, x: Tensor, y: Tensor) -> Tensor:
        """d(x, y)^2 = atan2(|y - <x,y>x|, <x,y>)^2 (gradient-stable at d = 0, docs/flowmaps.md)."""
        c = (x * y).sum(-1, keepdim=True)
        nw = safe_norm(y - c * x)
        return torch.atan2(nw, c).squeeze(-1) ** 2

    def pairwise_dist(self, x: Tensor, y: Tensor) -> Tensor:
        """d(x_i, y_j) = 2 asin(|x_i - y_j| / 2) (chord length; accurate at small and large distances)."""
        return 2 * torch.asin(torch.clamp(torch.cdist(x, y) / 2, max=1.0))

    def projx(self, x: Tensor) -> Tensor:
        """x / |x|."""
        return x / safe_norm(x)

    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        """P_x u = u - <x, u> x."""
        return u - (x * u).sum(-1, keepdim=True) * x

    def inner(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """Induced metric: the ambient dot product."""
        return (u * v).sum(-1)

    def tangent_frame(self, x: Tensor) -> Tensor:
        """Orthonormal frame of T_x S^d, (B, d, d + 1): rows 1..d of the Householder reflection H that maps x to
        -sign(x_0) e_0 (H is symmetric and orthogonal, so its other rows are orthonormal and orthogonal to x)."""
        sgn = torch.where(x[:, :1] >= 0, 1.0, -1.0).to(x.dtype)
        w = x.clone()
        w[:, :1] = w[:, :1] + sgn
        eye = torch.eye(self.ambient_dim, dtype=x.dtype, device=x.device)
        h = eye - 2 * w[:, :, None] * w[:, None, :] / (w * w).sum(-1)[:, None, None]
        return h[:, 1:, :]

    def constraint_error(self, x: Tensor) -> Tensor:
        """| |x| - 1 |."""
        return (x.norm(dim=-1) - 1).abs()

    def constraint(self) -> str:
        return "points must have unit Euclidean norm"

    def random_base(self, n: int, *, generator: torch.Generator | None = None, dtype=torch.float32) -> Tensor:
        """Uniform on S^d: g / |g| with g ~ N(0, I_{d+1})."""
        check_positive("n", n, integer=True)
        g = torch.randn(n, self.ambient_dim, generator=generator, dtype=dtype)
        return g / g.norm(dim=-1, keepdim=True).clamp_min(math.sqrt(TINY))

    def log_volume(self) -> float:
        """log of the area of S^d: log(2 pi^((d+1)/2) / Gamma((d+1)/2))."""
        k = (self.dim + 1) / 2
        return math.log(2) + k * math.log(math.pi) - math.lgamma(k)
