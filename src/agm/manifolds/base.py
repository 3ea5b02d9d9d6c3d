"""The manifold interface used by geodesic paths, flow maps and samplers.

A manifold M is embedded in R^n (``ambient_dim``); points and tangent vectors are ambient tensors of
shape (B, n). The operations follow the table of docs/flowmaps.md (the same API as
facebookresearch ``flow_matching``'s ``Manifold``: expmap, logmap, projx, proju), plus the metric,
the geodesic distance, the geodesic interpolant and a prior:

    geodesic(x0, x1, t) = exp_{x0}(t log_{x0} x1)                         (§B2, GFM I_t)
    d_g(x, y) = ||log_x y||_g                                            (§B5)

Every operation is written with plain differentiable torch ops so that forward-mode JVPs
(``torch.func.jvp``) pass through it, as the G-LSD / G-ESD losses need (§B4).
"""
from __future__ import annotations

import warnings
from abc import ABC, abstractmethod

import torch
from torch import Tensor

from agm.errors import DataError, check_positive

#: squared norms below this are treated as zero inside sqrt (keeps gradients finite at 0)
TINY = 1e-30


_JVP_READY = False


def jvp(func, primals, tangents):
    """``torch.func.jvp`` (forward-mode JVP), used by the geodesic-path target and the G-LSD/G-ESD losses.

    The first forward-mode call in a process makes torch import ``torch._decomp.decompositions_for_jvp``,
    which calls ``torch.jit.script`` inside torch itself and so emits torch's own "`torch.jit.script` is
    deprecated" DeprecationWarning (torch 2.13). agm never calls ``torch.jit.script``; we silence exactly that
    message, once, around the first call, and leave every other warning alone.
    """
    global _JVP_READY
    if not _JVP_READY:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=DeprecationWarning)
            out = torch.func.jvp(func, primals, tangents)
        _JVP_READY = True
        return out
    return torch.func.jvp(func, primals, tangents)


def safe_norm(u: Tensor, keepdim: bool = True) -> Tensor:
    """Euclidean norm whose gradient is 0 (not NaN) at u = 0: sqrt(max(|u|^2, tiny))."""
    return torch.sqrt(torch.clamp((u * u).sum(-1, keepdim=keepdim), min=TINY))


def sinc(n: Tensor) -> Tensor:
    """sin(n)/n with the Taylor branch 1 - n^2/6 + n^4/120 for n < 1e-3 (smooth, JVP-safe)."""
    small = n < 1e-3
    ns = torch.where(small, torch.ones_like(n), n)
    return torch.where(small, 1 - n * n / 6 + n**4 / 120, torch.sin(ns) / ns)


def sinhc(n: Tensor) -> Tensor:
    """sinh(n)/n with the Taylor branch 1 + n^2/6 + n^4/120 for n < 1e-3."""
    small = n < 1e-3
    ns = torch.where(small, torch.ones_like(n), n)
    return torch.where(small, 1 + n * n / 6 + n**4 / 120, torch.sinh(ns) / ns)


class Manifold(ABC):
    """A Riemannian manifold embedded in R^ambient_dim (docs/flowmaps.md).

    Attributes:
        dim: intrinsic dimension.
        ambient_dim: size of the last axis of points and tangent vectors.
        name: short name used in configs and results.
        atol: default tolerance of the on-manifold check (float32 round-off is ~1e-6).
    """

    name: str = "manifold"
    dim: int
    ambient_dim: int
    atol: float = 1e-4

    # --- geometry -------------------------------------------------------------------------
    @abstractmethod
    def expmap(self, x: Tensor, u: Tensor) -> Tensor:
        """Exponential map exp_x(u): the point at time 1 of the geodesic from x with velocity u."""

    @abstractmethod
    def logmap(self, x: Tensor, y: Tensor) -> Tensor:
        """Logarithm map log_x(y): the tangent vector at x with exp_x(log_x y) = y (inside the cut locus)."""

    @abstractmethod
    def projx(self, x: Tensor) -> Tensor:
        """Projection of an ambient point onto M (a retraction's second half)."""

    @abstractmethod
    def proju(self, x: Tensor, u: Tensor) -> Tensor:
        """Projection of an ambient vector onto the tangent space T_x M."""

    @abstractmethod
    def inner(self, x: Tensor, u: Tensor, v: Tensor) -> Tensor:
        """Riemannian metric g_x(u, v), shape (B,)."""

    def constraint_error(self, x: Tensor) -> Tensor:
        """Per-row violation of the membership constraint, shape (B,) (0 on M; see each manifold)."""
        return torch.zeros(x.shape[:-1], dtype=x.dtype)

    def belongs(self, x: Tensor, atol: float | None = None) -> Tensor:
        """Boolean (B,): which rows of x lie on M, i.e. constraint_error(x) <= atol (finite rows only)."""
        atol = self.atol if atol is None else atol
        return torch.isfinite(x).all(-1) & (self.constraint_error(x) <= atol)

    @abstractmethod
    def random_base(self, n: int, *, generator: torch.Generator | None = None, dtype=torch.float32) -> Tensor:
        """n draws of the prior rho_0 (uniform on compact M, wrapped normal at the origin otherwise)."""

    def to_tangent(self, x: Tensor, f: Tensor) -> Tensor:
        """Map a network's ambient output f to a tangent vector at x: proj_{T_x M} f (docs/flowmaps.md), unless a
        manifold overrides it (Lorentz: parallel transport from the origin, see there)."""
        return self.proju(x, f)

    def sqnorm(self, x: Tensor, u: Tensor) -> Tensor:
        """Squared metric norm ||u||_g^2 at x, shape (B,)."""
        return self.inner(x, u, u)

    def norm(self, x: Tensor, u: Tensor) -> Tensor:
        """Metric norm ||u||_g at x, shape (B,) (zero-safe gradient)."""
        return torch.sqrt(torch.clamp(self.sqnorm(x, u), min=TINY))

    def sqdist(self, x: Tensor, y: Tensor) -> Tensor:
        """Squared geodesic distance d_g(x, y)^2 = ||log_x y||_g^2, shape (B,) (docs/flowmaps.md)."""
        return self.sqnorm(x, self.logmap(x, y))

    def dist(self, x: Tensor, y: Tensor) -> Tensor:
        """Geodesic distance d_g(x, y), shape (B,)."""
        return torch.sqrt(torch.clamp(self.sqdist(x, y), min=TINY))

    def pairwise_dist(self, x: Tensor, y: Tensor) -> Tensor:
        """Matrix of geodesic distances d_g(x_i, y_j), shape (N, M)."""
        n, m = x.shape[0], y.shape[0]
        xi = x[:, None, :].expand(n, m, -1).reshape(n * m, -1)
        yj = y[None, :, :].expand(n, m, -1).reshape(n * m, -1)
        return self.dist(xi, yj).reshape(n, m)

    def geodesic(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """Geodesic interpolant I_t = exp_{x0}(t log_{x0} x1), t of shape (B,) (docs/flowmaps.md)."""
        return self.expmap(x0, t.reshape(-1, 1).to(x0.dtype) * self.logmap(x0, x1))

    def features(self, x: Tensor) -> Tensor:
        """Network input features of a point (default: its ambient coordinates)."""
        return x

    def wrapped_normal(self, mean: Tensor, std: float, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n draws of the wrapped normal exp_mean(z), z ~ N(0, std^2 I) isotropic in (T_mean M, g).

        ``mean`` is one point, shape (ambient_dim,). Isotropy in the tangent space means no parallel
        transport is needed: z = E eps for an orthonormal basis E of T_mean M.
        """
        check_positive("std", std)
        mean = self.check_point(mean.reshape(1, -1), "mean")
        basis = self.tangent_basis(mean[0])  # (dim, ambient)
        eps = torch.randn(n, self.dim, generator=generator, dtype=mean.dtype)
        z = std * eps @ basis
        return self.expmap(mean.expand(n, -1), z)

    def tangent_frame(self, x: Tensor) -> Tensor:
        """A g-orthonormal frame of T_x M for every row of x, shape (B, dim, ambient_dim) (batched; used by the
        divergence of :mod:`agm.manifolds.divergence`). Default, for manifolds whose metric is a constant times the
        ambient dot product and whose ``proju`` is the orthogonal projector: the eigenvectors of that projector with
        eigenvalue 1, rescaled to unit g-norm. Manifolds with another metric override it (Lorentz, SO(3))."""
        b, n = x.shape[0], self.ambient_dim
        eye = torch.eye(n, dtype=x.dtype, device=x.device)
        p = self.proju(x[:, None, :].expand(b, n, n).reshape(b * n, n), eye.expand(b, n, n).reshape(b * n, n)).reshape(b, n, n)
        _, vecs = torch.linalg.eigh(0.5 * (p + p.transpose(-1, -2)))  # ascending eigenvalues: the last dim are 1
        e = vecs[..., -self.dim:].transpose(-1, -2)  # (B, dim, n)
        norms = self.sqnorm(x[:, None, :].expand(b, self.dim, n).reshape(-1, n), e.reshape(-1, n)).reshape(b, self.dim, 1)
        return e / torch.sqrt(norms)

    def log_prior(self, x: Tensor) -> Tensor:
        """log rho_0(x) with respect to the Riemannian volume, shape (B,): -log vol(M) on a compact M with a uniform
        prior (``log_volume``); manifolds with another prior override it."""
        if not hasattr(self, "log_volume"):
            raise NotImplementedError(f"{self.describe()} has no prior density")
        return torch.full(x.shape[:-1], -self.log_volume(), dtype=x.dtype, device=x.device)

    def tangent_basis(self, x: Tensor) -> Tensor:
        """An orthonormal (in g) basis of T_x M, shape (dim, ambient_dim), by Gram-Schmidt on projected axes."""
        vecs: list[Tensor] = []
        eye = torch.eye(self.ambient_dim, dtype=x.dtype)
        for e in eye:
            v = self.proju(x[None], e[None])[0]
            for b in vecs:
                v = v - self.inner(x[None], v[None], b[None])[0] * b
            nv = self.sqnorm(x[None], v[None])[0]
            if nv > 1e-8:
                vecs.append(v / torch.sqrt(nv))
            if len(vecs) == self.dim:
                break
        return torch.stack(vecs)

    # --- validation ----------------------------------------------------------------------------
    def check_shape(self, x: Tensor, field: str = "x") -> Tensor:
        """Raise DataError unless x is a floating tensor of shape (B, ambient_dim) with finite values."""
        if not isinstance(x, Tensor):
            raise DataError(f"{field} must be a torch.Tensor of shape (B, {self.ambient_dim}), got {type(x).__name__}")
        if x.dim() != 2 or x.shape[-1] != self.ambient_dim:
            raise DataError(
                f"{field} has shape {tuple(x.shape)}; {self.describe()} accepts points of shape (B, {self.ambient_dim})"
            )
        if not x.is_floating_point():
            raise DataError(f"{field} has dtype {x.dtype}; a floating dtype is accepted")
        if not torch.isfinite(x).all():
            raise DataError(f"{field} contains non-finite values")
        return x

    def check_point(self, x: Tensor, field: str = "x", atol: float | None = None) -> Tensor:
        """Raise DataError unless every row of x lies on M (to ``atol``); returns x."""
        self.check_shape(x, field)
        ok = self.belongs(x, atol)
        if not bool(ok.all()):
            bad = int((~ok).nonzero()[0, 0])
            raise DataError(
                f"{field}[{bad}]={x[bad].tolist()} is not on {self.describe()} "
                f"(tolerance {atol if atol is not None else self.atol}); {self.constraint()}"
            )
        return x

    def describe(self) -> str:
        """Human-readable name with dimension, e.g. 'Sphere(dim=2)'."""
        return f"{type(self).__name__}(dim={self.dim})"

    def constraint(self) -> str:
        """The membership constraint, in words (used in error messages)."""
        return ""

    def __repr__(self) -> str:
        return self.describe()
