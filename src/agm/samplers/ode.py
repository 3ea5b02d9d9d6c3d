"""Fixed-step ODE integration of dx/dt = v(x, t) (Euler or Heun's second-order method).

Euler: x_{k+1} = x_k + h v(x_k, t_k).
Heun:  x~ = x_k + h v(x_k, t_k);  x_{k+1} = x_k + h/2 [v(x_k, t_k) + v(x~, t_{k+1})].
"""
from __future__ import annotations

import torch
from torch import Tensor

from agm.errors import check_choice
from agm.samplers.base import Field, time_grid


class ODESampler:
    """Euler / Heun ODE sampler (``method`` in {'euler', 'heun'})."""

    METHODS = ("euler", "heun")

    def __init__(self, steps: int = 100, method: str = "euler", t0: float = 0.0, t1: float = 1.0) -> None:
        time_grid(steps)
        check_choice("sample.method", method, self.METHODS)
        self.steps, self.method, self.t0, self.t1 = steps, method, t0, t1

    @torch.no_grad()
    def sample(self, field: Field, x0: Tensor, *, return_trajectory: bool = False, times: Tensor | None = None, **_) -> Tensor:
        """Integrate from x0 at t0 to t1; returns x(t1) or the trajectory."""
        ts = time_grid(self.steps, self.t0, self.t1, dtype=x0.dtype, device=x0.device) if times is None else times
        x = x0
        traj = [x0] if return_trajectory else None
        for k in range(len(ts) - 1):
            t, t_next = ts[k], ts[k + 1]
            h = t_next - t
            v = field(x, t.expand(x.shape[0]))
            if self.method == "euler":
                x = x + h * v
            else:
                x_pred = x + h * v
                x = x + 0.5 * h * (v + field(x_pred, t_next.expand(x.shape[0])))
            if traj is not None:
                traj.append(x)
        return torch.stack(traj) if traj is not None else x
