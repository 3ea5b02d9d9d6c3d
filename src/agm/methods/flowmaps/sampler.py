"""Samplers on a manifold: k-step flow-map sampling and a Riemannian ODE sampler (GFM, arXiv 2510.21608; docs/flowmaps.md (F8)).

Flow-map sampling (1 network evaluation per step), on a grid 0 = t_0 < ... < t_k = 1:
    x_{i+1} = X_{t_i, t_{i+1}}(x_i)
Riemannian ODE (the many-step RFM baseline) for dx/dt = v_t(x), v_t(x) in T_x M:
    euler:    x_{i+1} = exp_{x_i}(h proj_{x_i} v(x_i, t_i))
    midpoint: m = exp_{x_i}(h/2 v(x_i, t_i));  x_{i+1} = exp_{x_i}(h proj_{x_i} v(m, t_i + h/2))
(the projection of v(m) back onto T_{x_i} M stands in for parallel transport: it differs by O(h^2) |v|,
so the step stays second order). The reference library retracts by projection instead of exp; we use
exp, which keeps every iterate on M exactly (up to round-off).
"""
from __future__ import annotations

import torch
from torch import Tensor

from agm.errors import check_choice
from agm.manifolds.base import Manifold
from agm.methods.flowmaps.nets import FlowMap
from agm.samplers.base import Field, time_grid
from agm.samplers.ode import integrate


class FlowMapSampler:
    """k-step flow-map sampler x <- X_{t_i, t_{i+1}}(x) on a uniform grid of ``steps`` steps (docs/flowmaps.md (F8))."""

    def __init__(self, steps: int = 1, t0: float = 0.0, t1: float = 1.0, project: bool = True) -> None:
        time_grid(steps)  # validates steps (ConfigError for 0, negative, non-integer)
        self.steps, self.t0, self.t1, self.project = steps, t0, t1, project

    @torch.no_grad()
    def sample(self, flow_map: FlowMap, x0: Tensor, *, return_trajectory: bool = False) -> Tensor:
        """Map prior draws x0 (checked to be on the manifold) to samples; trajectory shape (steps+1, B, n)."""
        m = flow_map.manifold
        x = m.check_point(x0, "x0")
        ts = time_grid(self.steps, self.t0, self.t1, dtype=x0.dtype, device=x0.device)
        traj = [x]
        for i in range(self.steps):
            x = flow_map(ts[i].expand(x.shape[0]), ts[i + 1].expand(x.shape[0]), x)
            if self.project:
                x = m.projx(x)
            traj.append(x)
        return torch.stack(traj) if return_trajectory else x


class RiemannianODESampler:
    """Fixed-step Riemannian ODE integrator ('euler' or 'midpoint') over any tangent field ``field(x, t)``."""

    METHODS = ("euler", "midpoint")

    def __init__(self, manifold: Manifold, steps: int = 100, method: str = "euler", t0: float = 0.0, t1: float = 1.0) -> None:
        time_grid(steps)
        check_choice("sample.method", method, self.METHODS)
        self.manifold, self.steps, self.method, self.t0, self.t1 = manifold, steps, method, t0, t1

    def step(self, x: Tensor, h: Tensor, v: Tensor) -> Tensor:
        """The exp-map step exp_x(h proj_x v) (a stage's field value projected onto T_x M)."""
        return self.manifold.expmap(x, h * self.manifold.proju(x, v))

    @torch.no_grad()
    def sample(self, field: Field, x0: Tensor, *, return_trajectory: bool = False) -> Tensor:
        """Integrate from x0 (checked to be on the manifold) at t0 to t1 (:func:`agm.samplers.integrate` with the
        exp-map step; every iterate projected onto M against round-off)."""
        x = self.manifold.check_point(x0, "x0")
        ts = time_grid(self.steps, self.t0, self.t1, dtype=x0.dtype, device=x0.device)
        return integrate(field, x, ts, method=self.method, step=self.step, project=self.manifold.projx,
                         return_trajectory=return_trajectory)
