"""Geodesic interpolant on a Riemannian manifold (Riemannian flow matching, Chen & Lipman, arXiv 2302.03660;
docs/flowmaps.md (F2)).

    I_t = exp_{x0}(alpha_t log_{x0} x1),   x0 ~ rho_0 (prior, t = 0),  x1 ~ data (t = 1),  alpha_t = t

and the regression target is the path's velocity dI_t/dt, computed either

* ``target='jvp'`` (default; what the reference library does): forward-mode JVP of t -> I_t, or
* ``target='closed_form'``: dI_t/dt = alpha'_t / (1 - alpha_t) log_{I_t} x1 (our derivation, checked against finite differences in
  tests/manifolds/test_geodesic_path.py; valid away
  from the cut locus; times are clamped to t <= 1 - 1e-4 for it).

Only the CondOT schedule alpha_t = t is implemented (the usual default).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from agm.errors import ConfigError, check_choice
from agm.manifolds.base import Manifold, jvp


@dataclass
class GeodesicPathSample:
    """One draw of the geodesic path: the point I_t, the time t (B,) and the velocity target dI_t/dt (tangent at I_t)."""

    xt: Tensor
    t: Tensor
    target: Tensor


class GeodesicPath:
    """Geodesic path between prior and data points on ``manifold``; see the module docstring for the equations.

    Args:
        manifold: the manifold whose expmap/logmap define the geodesics.
        target: 'jvp' or 'closed_form' (how dI_t/dt is computed; both give the same vector).
        t_min, t_max: training times t ~ U[t_min, t_max].
    """

    TARGETS = ("jvp", "closed_form")

    def __init__(self, manifold: Manifold, target: str = "jvp", t_min: float = 0.0, t_max: float = 1.0) -> None:
        check_choice("path.target", target, self.TARGETS)
        if not (0.0 <= t_min < t_max <= 1.0):
            raise ConfigError(f"path.t_min={t_min!r}, path.t_max={t_max!r} must satisfy 0 <= t_min < t_max <= 1")
        self.manifold, self.target, self.t_min, self.t_max = manifold, target, float(t_min), float(t_max)

    def sample_t(self, n: int, *, generator: torch.Generator | None = None, dtype=torch.float32) -> Tensor:
        """t ~ U[t_min, t_max], shape (n,), on the generator's device."""
        dev = generator.device if generator is not None else None
        return self.t_min + (self.t_max - self.t_min) * torch.rand(n, generator=generator, dtype=dtype, device=dev)

    def point(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """I_t = exp_{x0}(t log_{x0} x1)."""
        return self.manifold.geodesic(x0, x1, t)

    def velocity(self, x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """(I_t, dI_t/dt) by the configured method."""
        m = self.manifold
        if self.target == "jvp":
            log01 = m.logmap(x0, x1)
            return jvp(lambda tt: m.expmap(x0, tt.reshape(-1, 1) * log01), (t,), (torch.ones_like(t),))
        tc = t.clamp(max=1 - 1e-4)
        xt = self.point(x0, x1, tc)
        return xt, m.logmap(xt, x1) / (1 - tc).reshape(-1, 1)

    def sample(self, x0: Tensor, x1: Tensor, t: Tensor | None = None, *, generator: torch.Generator | None = None) -> GeodesicPathSample:
        """Draw t (if not given) and return (I_t, t, dI_t/dt)."""
        if t is None:
            t = self.sample_t(x0.shape[0], generator=generator, dtype=x0.dtype)
        xt, dxt = self.velocity(x0, x1, t)
        return GeodesicPathSample(xt=xt, t=t, target=dxt)
