"""Hyperbolic space H^d in the Lorentz (hyperboloid) model, with conversions to the Poincare ball.

We compute in the Lorentz model (numerically steadier exp/log than the ball's Mobius formulas of
docs/flowmaps.md; the two are isometric) and use the Poincare ball only for plots and data exchange.
Minkowski product <x, y>_L = -x_0 y_0 + sum_i x_i y_i; H^d = {x : <x, x>_L = -1, x_0 > 0}.

    exp_x(u)  = cosh(|u|_L) x + sinh(|u|_L) u / |u|_L,   |u|_L = sqrt(<u, u>_L)  (u tangent)
    log_x(y)  = asinh(|w|_L) w / |w|_L,  w = y + <x, y>_L x   (|w|_L = sinh d(x, y))
    d(x, y)   = arccosh(-<x, y>_L) = asinh(|w|_L)
    proj_x(u) = u + <x, u>_L x,   projx(x) = (sqrt(1 + |x_{1:}|^2), x_{1:})
    ball(x)   = x_{1:} / (1 + x_0),   lorentz(p) = ((1 + |p|^2), 2 p) / (1 - |p|^2)
Prior: wrapped normal at the origin o = (1, 0, ..., 0) with std ``prior_std`` (docs/flowmaps.md: the space is
not compact, so there is no uniform prior).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from agm.errors import DataError, check_choice, check_positive
from agm.manifolds.base import TINY, Manifold, sinhc


def minkowski(u: Tensor, v: Tensor) -> Tensor:
    """<u, v>_L = -u_0 v_0 + sum_{i>=1} u_i v_i, shape (B,)."""
    return (u[..., 1:] * v[..., 1:]).sum(-1) - u[..., 0] * v[..., 0]


class Lorentz(Manifold):
    """H^dim as the upper sheet of the hyperboloid in R^(dim+1); dim >= 1 (dim = 2: the hyperbolic plane)."""

    name = "hyperbolic"
    #: points are kept within this geodesic distance of the origin (float safety, see ``projx``); None: by dtype
    max_radius: float | None = None

    HEADS = ("transport", "project")

    def __init__(self, dim: int = 2, prior_std: float = 1.0, head: str = "transport") -> None:
        check_positive("manifold.dim", dim, integer=True)
        check_positive("manifold.prior_std", prior_std)
        check_choice("manifold.head", head, self.HEADS)
        self.head = head
        self.dim = dim
        self.ambient_dim = dim + 1
        self.prior_std = float(prior_std)

    def origin(self, dtype=torch.float32) -> Tensor:
        """o = (1, 0, ..., 0)."""
        o = torch.zeros(self.ambient_dim, dtype=dtype)
        o[0] = 1
        return o

    def _lnorm(self, u: Tensor) -> Tensor:
        return torch.sqrt(torch.clamp(minkowski(u, u), min=TINY)).unsqueeze(-1)

    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        """exp_x(u) = cosh|u|_L x + sinhc(|u|_L) u.

        x is re-projected onto H^d and u onto T_x H^d first, and the result is re-projected: in float32
        the hyperboloid constraint loses ~eps * x_0^2, which the Minkowski products would amplify.
        Float safety (our choice, see ``projx``): a step longer than R (17.7 in float32) is shortened to length R
        along the same direction, so that cosh|u| x cannot overflow.
        """
        x = self.projx(x)
        u = self.proju(x, u)
        # |u|_L = s |u / s|_L with s = max_i |u_i|: the Minkowski square of u itself can overflow (inf - inf)
        scale = torch.clamp(u.abs().amax(-1, keepdim=True), min=TINY)
        d = u / scale
        dn = self._lnorm(d)
        n = scale * dn
        radius = self._radius(x.dtype)
        long = n > radius
        nc = torch.where(long, torch.full_like(n, radius), n)
        step = torch.where(long, math.sinh(radius) * d / dn, sinhc(nc) * u)
        return self.projx(torch.cosh(nc) * x + step)

    def _radius(self, dtype) -> float:
        """R = max_radius, or 0.2 log(finfo(dtype).max) if None (see ``projx``)."""
        return self.max_radius if self.max_radius is not None else 0.2 * math.log(torch.finfo(dtype).max)

    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        """log_x(y) = asinh(|w|_L) w / |w|_L, w = y + <x,y>_L x (x, y first re-projected onto H^d)."""
        x, y = self.projx(x), self.projx(y)
        w = y + minkowski(x, y).unsqueeze(-1) * x
        nw = self._lnorm(w)
        small = nw < 1e-4
        ratio = torch.where(small, 1 - nw * nw / 6, torch.asinh(nw) / torch.where(small, torch.ones_like(nw), nw))
        return ratio * w

    def sqdist(self, x: Tensor, y: Tensor) -> Tensor:
        """d(x, y)^2 = asinh(|y + <x,y>_L x|_L)^2 (no cancellation near d = 0)."""
        w = y + minkowski(x, y).unsqueeze(-1) * x
        return torch.asinh(self._lnorm(w)).squeeze(-1) ** 2

    def pairwise_dist(self, x: Tensor, y: Tensor) -> Tensor:
        """d(x_i, y_j) = arccosh(max(1, -<x_i, y_j>_L)) (use float64 for small distances)."""
        x, y = self.projx(x), self.projx(y)
        g = x[:, 1:] @ y[:, 1:].T - x[:, :1] @ y[:, :1].T
        return torch.acosh(torch.clamp(-g, min=1.0))

    def projx(self, x: Tensor) -> Tensor:
        """Lift onto the hyperboloid keeping the space-like coordinates: x_0 = sqrt(1 + |x_{1:}|^2).

        Our float-safety choice (not in the paper): the space-like part is first shrunk, if needed, to
        |x_{1:}| <= sinh(R), i.e. points farther than R from the origin are pulled back radially onto that
        sphere, with R = ``max_radius`` or, if that is None (default), R = 0.2 log(finfo(dtype).max) (17.7 in
        float32, 142 in float64). Reason: a tangent vector at x, projected twice (network output, then expmap),
        reaches ~|f| x_0^4 ~ |f| e^(4R)/16 in the Minkowski products, which must fit the dtype. Without the cap
        one long flow-map step of an untrained or diverging network overflows and the sample is inf/NaN;
        nothing changes within radius R.
        """
        xs = x[..., 1:]
        radius = self._radius(x.dtype)
        amax = torch.clamp(xs.abs().amax(-1, keepdim=True), min=TINY)  # scaled norm: |x_{1:}|^2 may overflow
        r = amax * torch.sqrt(torch.clamp(((xs / amax) ** 2).sum(-1, keepdim=True), min=TINY))
        cap = math.sinh(radius)
        xs = xs * torch.where(r > cap, cap / r, torch.ones_like(r))
        x0 = torch.sqrt(1 + (xs * xs).sum(-1, keepdim=True))
        return torch.cat([x0, xs], dim=-1)

    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        """u + <x, u>_L x (orthogonal projection onto T_x H^d in the Minkowski product)."""
        return u + minkowski(x, u).unsqueeze(-1) * x

    def transport_from_origin(self, x: Tensor, v: Tensor) -> Tensor:
        """Parallel transport of v in T_o H^d (v_0 = 0) along the geodesic from o to x:
        PT(v) = v + <x, v>_L / (1 - <o, x>_L) (o + x) = v + (x_{1:} . v_{1:}) / (1 + x_0) (o + x). Isometric."""
        v = torch.cat([torch.zeros_like(v[..., :1]), v[..., 1:]], dim=-1)
        o = torch.zeros_like(x)
        o[..., 0] = 1
        c = (x[..., 1:] * v[..., 1:]).sum(-1, keepdim=True) / (1 + x[..., :1])
        return v + c * (o + x)

    def to_tangent(self, x: Tensor, f: Tensor) -> Tensor:
        """Network output -> tangent vector at x. head='project': proj_{T_x} f (docs/flowmaps.md as written); its metric
        norm grows like cosh d(o, x) for a bounded f, which made G-LSD diverge (NaN) in our runs on H^2.
        head='transport' (default, our choice): the space-like part of f read as a vector of T_o H^d and
        parallel-transported to x, so |v|_g = |f_{1:}| is bounded. Both are smooth and give tangent vectors."""
        if self.head == "project":
            return self.proju(x, f)
        return self.transport_from_origin(self.projx(x), f)

    def inner(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """Metric on T_x H^d: the Minkowski product (positive definite there)."""
        return minkowski(u, v)

    def constraint_error(self, x: Tensor) -> Tensor:
        """|<x, x>_L + 1| / (1 + x_0^2) (relative: float32 round-off grows with x_0^2); inf where x_0 <= 0."""
        err = (minkowski(x, x) + 1).abs() / (1 + x[..., 0] ** 2)
        return torch.where(x[..., 0] > 0, err, torch.full_like(err, float("inf")))

    def constraint(self) -> str:
        return "points must satisfy -x0^2 + |x_{1:}|^2 = -1 with x0 > 0 (use Lorentz.from_poincare for ball coordinates)"

    def random_base(self, n: int, *, generator: torch.Generator | None = None, dtype=torch.float32) -> Tensor:
        """Wrapped normal exp_o(z), z ~ N(0, prior_std^2 I) in T_o H^d."""
        check_positive("n", n, integer=True)
        z = self.prior_std * torch.randn(n, self.dim, generator=generator, dtype=dtype)
        u = torch.cat([torch.zeros(n, 1, dtype=dtype), z], dim=-1)
        return self.expmap(self.origin(dtype).expand(n, -1), u)

    def tangent_frame(self, x: Tensor) -> Tensor:
        """g-orthonormal frame of T_x H^d: the standard basis of T_o H^d parallel-transported to x, (B, dim, dim + 1)."""
        eye = torch.eye(self.ambient_dim, dtype=x.dtype, device=x.device)[1:]  # (dim, dim+1)
        b = x.shape[0]
        xr = x[:, None, :].expand(b, self.dim, self.ambient_dim).reshape(-1, self.ambient_dim)
        return self.transport_from_origin(xr, eye.expand(b, -1, -1).reshape(-1, self.ambient_dim)).reshape(b, self.dim, -1)

    def log_prior(self, x: Tensor) -> Tensor:
        """Log density of the wrapped normal prior w.r.t. the hyperbolic volume: with z = log_o x, r = |z|,
        log N(z; 0, s^2 I_d) - (d - 1) log(sinh(r) / r)."""
        o = self.origin(x.dtype).to(x.device).expand_as(x)
        z = self.logmap(o, x)
        r2 = minkowski(z, z).clamp_min(0)
        r = torch.sqrt(r2.clamp_min(TINY))
        d, s2 = self.dim, self.prior_std**2
        log_n = -0.5 * r2 / s2 - 0.5 * d * math.log(2 * math.pi * s2)
        return log_n - (d - 1) * torch.log(sinhc(r))

    def features(self, x: Tensor) -> Tensor:
        """Network features: the Poincare-ball coordinates (bounded) and asinh of the ambient space-like ones."""
        return torch.cat([self.to_poincare(x), torch.asinh(x[..., 1:])], dim=-1)

    @staticmethod
    def to_poincare(x: Tensor) -> Tensor:
        """Poincare ball coordinates p = x_{1:} / (1 + x_0)."""
        return x[..., 1:] / (1 + x[..., :1])

    def from_poincare(self, p: Tensor) -> Tensor:
        """Lorentz point ((1 + |p|^2), 2 p) / (1 - |p|^2); raises DataError unless |p| < 1."""
        if p.dim() != 2 or p.shape[-1] != self.dim:
            raise DataError(f"p has shape {tuple(p.shape)}; Poincare ball points of shape (B, {self.dim}) are accepted")
        sq = (p * p).sum(-1, keepdim=True)
        if bool((sq >= 1).any()):
            raise DataError("p has rows with norm >= 1; Poincare ball points must have norm < 1")
        return torch.cat([1 + sq, 2 * p], dim=-1) / (1 - sq)
