"""Exact log-likelihood of a learned flow on a manifold by the continuous change of variables (docs/flowmaps.md (F10)).

For the ODE dx/dt = v_t(x) on M carrying the prior rho_0 at t = 0 to p_1 at t = 1 (the RFM baseline's field, or
the diagonal v_{t,t} of a flow map: GFM, arXiv 2510.21608, evaluates its "implicit flow" this way; Riemannian CNF /
RFM, arXiv 2302.03660, for the baseline),

    log p_1(x_1) = log rho_0(x_0) - int_0^1 div_g v_t(x_t) dt,     x_t the trajectory through x_1 at t = 1,

with log rho_0 the prior's density with respect to the Riemannian volume (``Manifold.log_prior``; uniform on S^2:
-log 4 pi) and div_g the Riemannian divergence (:func:`agm.manifolds.divergence.divergence`, exact trace by
d forward-mode JVPs or a Hutchinson estimate in the tangent space with probes held fixed along each trajectory).
The ODE is integrated backward from t = 1 with fixed steps (:func:`agm.samplers.ode.integrate`, geodesic steps):
Euler x <- exp_x(-h v(x, t)), or midpoint m = exp_x(-h/2 v(x, t)), x <- exp_x(-h proj_x v(m, t - h/2)) with the
divergence taken at the midpoint.
NLL = -log p_1 in nats, with densities with respect to the Riemannian volume (area on the unit sphere).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from agm.errors import check_choice, check_positive
from agm.manifolds.base import Manifold
from agm.manifolds.divergence import ESTIMATORS, NOISES, divergence
from agm.samplers.base import time_grid
from agm.samplers.ode import integrate

Field = Callable[[Tensor, Tensor], Tensor]


@torch.no_grad()
def log_likelihood(manifold: Manifold, field: Field, x1: Tensor, *, steps: int = 100, method: str = "midpoint",
                   estimator: str = "exact", noise: str = "rademacher", n_probes: int = 1,
                   generator: torch.Generator | None = None, batch_size: int = 4096) -> Tensor:
    """log p_1(x1) of the flow of ``field(x, t)`` (tangent at x) from the prior at t = 0; shape (B,), nats.

    ``estimator``: 'exact' (d JVPs per evaluation) or 'hutchinson' (one JVP per probe; ``n_probes`` independent
    probes averaged, each fixed along its trajectory). ``method``: 'euler' (steps evaluations) or 'midpoint'
    (2 steps evaluations). Rows are processed in chunks of ``batch_size``.
    """
    check_choice("method", method, ("euler", "midpoint"))
    check_choice("estimator", estimator, ESTIMATORS)
    check_choice("noise", noise, NOISES)
    check_positive("n_probes", n_probes, integer=True)
    check_positive("batch_size", batch_size, integer=True)
    manifold.check_point(x1, "x1")
    ts = time_grid(steps, 0.0, 1.0, dtype=x1.dtype, device=x1.device)

    def step(x: Tensor, h: Tensor, v: Tensor) -> Tensor:  # the geodesic step, v projected onto T_x M
        return manifold.projx(manifold.expmap(x, h * manifold.proju(x, v)))

    out = []
    for chunk in x1.split(batch_size):
        reps = 1 if estimator == "exact" else n_probes
        x = chunk.repeat(reps, 1)
        eps = None
        if estimator == "hutchinson":
            dev = generator.device if generator is not None else None
            eps = torch.randn(x.shape[0], manifold.dim, generator=generator, dtype=x.dtype, device=dev).to(x.device)
            if noise == "rademacher":
                eps = torch.sign(eps)
        x, acc = integrate(
            field, x, ts.flip(0), method=method, step=step,
            integrand=lambda xx, t: divergence(manifold, lambda y: field(y, t), xx, estimator=estimator, eps=eps))
        logp = manifold.log_prior(x) + acc  # acc = int_1^0 div dt = -int_0^1 div dt
        out.append(logp.reshape(reps, -1).mean(0))
    return torch.cat(out)


def nll(manifold: Manifold, field: Field, x1: Tensor, **kwargs) -> float:
    """Mean negative log-likelihood (nats a point) of the rows of x1; keyword arguments as :func:`log_likelihood`."""
    return float(-log_likelihood(manifold, field, x1, **kwargs).mean())


__all__ = ["log_likelihood", "nll"]
