"""Euler-Maruyama integration of dX = f(X, t) dt + g(X, t) dW.

    x_{k+1} = x_k + f(x_k, t_k) dt_k + g(x_k, t_k) sqrt(dt_k) xi_k,   xi_k ~ N(0, I)

(docs/agm.md: AGM samples with EM over the EMA drift; the last step is taken without
noise by default.) The diffusion g is a constant sigma or a callable g(x, t) broadcastable to x
(for example Bellman Diffusion Dynamics' sqrt(p(x)) or a memoryless noise schedule sigma(t)).
"""
from __future__ import annotations

import torch
from torch import Tensor

from agm.samplers.base import Diffusion, Field, time_grid


class EulerMaruyama:
    """Euler-Maruyama SDE sampler.

    Args:
        steps: number of steps (> 0).
        t0, t1: integration interval (default 0 -> 1: prior -> data).
        noise_last_step: add noise on the final step too (default False: the last step is a mean step).
    """

    def __init__(self, steps: int = 100, t0: float = 0.0, t1: float = 1.0, noise_last_step: bool = False) -> None:
        time_grid(steps)  # validates steps
        self.steps, self.t0, self.t1 = steps, t0, t1
        self.noise_last_step = noise_last_step

    @torch.no_grad()
    def sample(
        self,
        field: Field,
        x0: Tensor,
        diffusion: Diffusion = 0.0,
        *,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
        times: Tensor | None = None,
    ) -> Tensor:
        """Integrate from x0 at t0 to t1; returns x(t1) or the (steps + 1, *x0.shape) trajectory."""
        ts = time_grid(self.steps, self.t0, self.t1, dtype=x0.dtype, device=x0.device) if times is None else times
        x = x0
        traj = [x0] if return_trajectory else None
        n = len(ts) - 1
        for k in range(n):
            t, dt = ts[k], ts[k + 1] - ts[k]
            tb = t.expand(x.shape[0])
            x_new = x + field(x, tb) * dt
            last = k == n - 1
            if not (last and not self.noise_last_step):
                g = diffusion(x, tb) if callable(diffusion) else diffusion
                if callable(diffusion) or g != 0.0:
                    xi = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
                    x_new = x_new + g * dt.abs().sqrt() * xi
            x = x_new
            if traj is not None:
                traj.append(x)
        return torch.stack(traj) if traj is not None else x
