"""The Riemannian divergence of a tangent vector field on an embedded manifold (docs/flowmaps.md, (F10)).

For a field v tangent to M (given in ambient coordinates and defined on a neighbourhood of M, as
v(x) = proj_x f(x) is) and a g-orthonormal frame e_1..e_d of T_x M (``Manifold.tangent_frame``):

    div_g v(x) = sum_i g_x(e_i, J_v(x) e_i),     J_v = the ambient Jacobian of v

(the Levi-Civita connection of the induced metric is the tangential part of the ambient derivative, and
g(e_i, .) only sees that part). ``exact`` computes the d directional derivatives J_v e_i by forward-mode JVPs;
``hutchinson`` estimates the trace with one JVP: z = sum_i eps_i e_i, eps ~ N(0, I_d) or Rademacher, and
E[g(z, J_v z)] = div_g v (unbiased; the probes live in the tangent space).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from agm.errors import check_choice
from agm.manifolds.base import Manifold, jvp

ESTIMATORS = ("exact", "hutchinson")
NOISES = ("gaussian", "rademacher")


def divergence(manifold: Manifold, field: Callable[[Tensor], Tensor], x: Tensor, *, estimator: str = "exact",
               eps: Tensor | None = None, noise: str = "rademacher", generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """(v(x), div_g v(x)) for the tangent field ``field`` at the rows of x; shapes (B, n) and (B,).

    ``estimator='exact'``: d JVPs (d = manifold.dim). ``'hutchinson'``: one JVP with the probe z = E^T eps;
    ``eps`` (B, d) may be given (e.g. fixed along an ODE trajectory), else drawn with ``generator`` from ``noise``.
    """
    check_choice("estimator", estimator, ESTIMATORS)
    frame = manifold.tangent_frame(x)  # (B, d, n)
    if estimator == "exact":
        v = None
        div = x.new_zeros(x.shape[0])
        for i in range(manifold.dim):
            e = frame[:, i]
            v, jv = jvp(field, (x,), (e,))
            div = div + manifold.inner(x, e, jv)
        return v, div
    if eps is None:
        check_choice("noise", noise, NOISES)
        dev = generator.device if generator is not None else None
        eps = torch.randn(x.shape[0], manifold.dim, generator=generator, dtype=x.dtype, device=dev).to(x.device)
        if noise == "rademacher":
            eps = torch.sign(eps)
    z = torch.einsum("bd,bdn->bn", eps.to(x.dtype), frame)
    v, jz = jvp(field, (x,), (z,))
    return v, manifold.inner(x, z, jz)


__all__ = ["divergence", "ESTIMATORS", "NOISES"]
