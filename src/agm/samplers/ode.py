"""Fixed-step ODE integration of dx/dt = v(x, t): one function, :func:`integrate`, and the sampler over it.

On a grid t_0, ..., t_K (increasing, or decreasing to integrate backward), with h = t_{k+1} - t_k:

    euler:     x_{k+1} = x_k + h v(x_k, t_k)
    midpoint:  m = x_k + h/2 v(x_k, t_k);  x_{k+1} = x_k + h v(m, t_k + h/2)
    heun:      x~ = x_k + h v(x_k, t_k);  x_{k+1} = x_k + h/2 [v(x_k, t_k) + v(x~, t_{k+1})]
    rk4:       the classical Runge-Kutta method, x_{k+1} = x_k + h/6 (k1 + 2 k2 + 2 k3 + k4)

``x + h v`` is ``step(x, h, v)``: the default adds; a manifold passes its retraction (e.g.
``projx(expmap(x, h proju(x, v)))``, the tangent vectors of the other stages projected onto T_x M).
``project``, when given, maps every accepted iterate x_{k+1} (not the stages' points) back onto the
constraint set, e.g. a manifold's ``projx`` after an ``expmap`` step (agm.methods.flowmaps.sampler).
With ``integrand``, the same rule also gives int g(x_t, t) dt along the path (the quadrature of the
augmented ODE dI/dt = g: left point, midpoint, trapezoid or Simpson), e.g. the divergence of a CNF.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from agm.errors import check_choice
from agm.samplers.base import Field, time_grid

METHODS = ("euler", "midpoint", "heun", "rk4")
Step = Callable[[Tensor, Tensor, Tensor], Tensor]
Integrand = Callable[[Tensor, Tensor], "tuple[Tensor, Tensor]"]


def add_step(x: Tensor, h: Tensor, v: Tensor) -> Tensor:
    """The Euclidean step x + h v."""
    return x + h * v


def integrate(field: Field, x0: Tensor, ts: Tensor, *, method: str = "euler", step: Step = add_step,
              project: Optional[Callable[[Tensor], Tensor]] = None, integrand: Optional[Integrand] = None,
              return_trajectory: bool = False):
    """Integrate dx/dt = field(x, t) (t of shape (B,)) from x0 at ts[0] over the grid ``ts`` (1-D, either direction).

    ``step(x, h, v)`` takes every step (default x + h v); ``project``, when given, is applied to each new iterate.
    Returns x(ts[-1]), or the trajectory (len(ts), B, ...) with ``return_trajectory``. With ``integrand``, a
    callable (x, t) -> (field(x, t), g) with g of shape (B,), returns (x, I) with I = int_{ts[0]}^{ts[-1]} g dt
    by the method's own quadrature; ``integrand`` then replaces ``field`` wherever the rule needs g (every
    stage but the first of 'midpoint'), so the field is evaluated once a stage.
    """
    check_choice("method", method, METHODS)
    n = x0.shape[0]

    def fg(x: Tensor, t: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        if integrand is None:
            return field(x, t.expand(n)), None
        return integrand(x, t.expand(n))

    x, acc = x0, None if integrand is None else x0.new_zeros(n)
    traj = [x0] if return_trajectory else None
    for k in range(len(ts) - 1):
        t, t_next = ts[k], ts[k + 1]
        h = t_next - t
        if method == "euler":
            v, g = fg(x, t)
            x_new = step(x, h, v)
        elif method == "midpoint":
            mid = step(x, 0.5 * h, field(x, t.expand(n)))
            v, g = fg(mid, t + 0.5 * h)
            x_new = step(x, h, v)
        elif method == "heun":
            v1, g1 = fg(x, t)
            v2, g2 = fg(step(x, h, v1), t_next)
            x_new = step(x, 0.5 * h, v1 + v2)
            g = None if g1 is None else 0.5 * (g1 + g2)
        else:  # rk4
            v1, g1 = fg(x, t)
            v2, g2 = fg(step(x, 0.5 * h, v1), t + 0.5 * h)
            v3, g3 = fg(step(x, 0.5 * h, v2), t + 0.5 * h)
            v4, g4 = fg(step(x, h, v3), t_next)
            x_new = step(x, h / 6, v1 + 2 * v2 + 2 * v3 + v4)
            g = None if g1 is None else (g1 + 2 * g2 + 2 * g3 + g4) / 6
        if acc is not None:
            acc = acc + h * g
        x = x_new if project is None else project(x_new)
        if traj is not None:
            traj.append(x)
    out = torch.stack(traj) if traj is not None else x
    return out if acc is None else (out, acc)


class ODESampler:
    """Euler / Heun ODE sampler (``method`` in {'euler', 'heun'}) from t0 to t1 (:func:`integrate`)."""

    METHODS = ("euler", "heun")

    def __init__(self, steps: int = 100, method: str = "euler", t0: float = 0.0, t1: float = 1.0) -> None:
        time_grid(steps)
        check_choice("sample.method", method, self.METHODS)
        self.steps, self.method, self.t0, self.t1 = steps, method, t0, t1

    @torch.no_grad()
    def sample(self, field: Field, x0: Tensor, *, return_trajectory: bool = False, times: Tensor | None = None, **_) -> Tensor:
        """Integrate from x0 at t0 to t1; returns x(t1) or the trajectory."""
        ts = time_grid(self.steps, self.t0, self.t1, dtype=x0.dtype, device=x0.device) if times is None else times
        return integrate(field, x0, ts, method=self.method, return_trajectory=return_trajectory)
