"""Pretrained flow-matching models for steering experiments, and exact (closed-form) velocities.

Convention (agm core, DESIGN.md): linear flow-matching path ``x_t = t x_1 + (1 - t) x_0`` with
prior ``x_0 ~ N(0, I)`` at t = 0 and data ``x_1`` at t = 1, i.e. ``BrownianBridge(sigma=0)``. In
diffusion notation ``alpha_t = t``, ``sigma_t = 1 - t`` and (arXiv 2409.08861)

    v(x, t) = kappa_t x + eta_t s(x, t),   kappa_t = 1 / t,   eta_t = (1 - t) / t,

so the score is ``s = (t v - x) / (1 - t)`` and the noise (= x_0) prediction is ``x - t v``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from agm.tensors import expand_time
from agm.errors import DataError, check_positive
from agm.nets import TimeMLP
from agm.samplers import ODESampler


def velocity_to_score(v: Tensor, x: Tensor, t: Tensor, t_max: float = 1.0 - 1e-4) -> Tensor:
    """Score of the linear FM path from its velocity: s = (t v - x) / (1 - t) (arXiv 2409.08861, alpha_t = t)."""
    tb = expand_time(t, x).clamp(max=t_max)
    return (tb * v - x) / (1.0 - tb)


class GaussianFlowVelocity(nn.Module):
    """Exact linear-FM velocity for data N(mu, sd^2 I) (arXiv 2409.08861):

        v(x, t) = mu + c_t (x - t mu),   c_t = (t sd^2 - (1 - t)) / (t^2 sd^2 + (1 - t)^2).
    """

    def __init__(self, mu: Tensor | list[float], sd: float) -> None:
        super().__init__()
        check_positive("sd", float(sd))
        self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float32).reshape(-1))
        self.sd = float(sd)
        self.dim = int(self.mu.numel())

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        tb = expand_time(t, x)
        s2 = self.sd**2
        c = (tb * s2 - (1 - tb)) / (tb**2 * s2 + (1 - tb) ** 2)
        return self.mu + c * (x - tb * self.mu)


class EmpiricalFlowVelocity(nn.Module):
    """Exact linear-FM velocity of the empirical law of ``data`` (N points):

        w_i(x, t) ∝ N(x; t x1_i, (1 - t)^2 I),   E[x1 | x_t = x] = sum_i w_i x1_i,
        v(x, t) = (E[x1 | x_t = x] - x) / (1 - t).

    ``log_tilt(x, t, r)`` returns log sum_i w_i exp(r_i): the exact relative reward
    rho*(x, t) = log E_{p(x1 | x_t = x)}[exp r(x1)] of a tilt (arXiv 2306.01804).
    """

    def __init__(self, data: Tensor, t_max: float = 1.0 - 1e-3) -> None:
        super().__init__()
        if data.dim() != 2:
            raise DataError(f"data has shape {tuple(data.shape)}; expected (N, D)")
        self.register_buffer("data", data.float())
        self.t_max = t_max
        self.dim = data.shape[1]

    def _logw(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        tb = expand_time(t, x).clamp(max=self.t_max)
        diff = x[:, None, :] - tb[:, :, None] * self.data[None]  # (B, N, D)
        logw = -(diff.pow(2).sum(-1)) / (2 * (1 - tb) ** 2)  # (B, N)
        return torch.log_softmax(logw, dim=1), tb

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        logw, tb = self._logw(x, t)
        m = logw.exp() @ self.data
        return (m - x) / (1 - tb)

    def log_tilt(self, x: Tensor, t: Tensor, r: Tensor) -> Tensor:
        """rho*(x, t) = log sum_i w_i(x, t) exp(r_i) for reward values r (N,) on the data points."""
        logw, _ = self._logw(x, t)
        return torch.logsumexp(logw + r[None, :].to(logw.dtype), dim=1)


def train_flow_model(
    data: Tensor,
    *,
    hidden: int = 128,
    depth: int = 3,
    steps: int = 3000,
    batch: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
    ema: float = 0.999,
    grad_clip: float = 0.0,
) -> TimeMLP:
    """Train a flow-matching ``TimeMLP`` on ``data`` with the shared Trainer (AdamW, no weight decay, EMA):

        min_theta E_{t, x0 ~ N(0, I), x1 ~ data} || v_theta(x_t, t) - (x1 - x0) ||^2

    (linear flow matching, arXiv 2210.02747; :class:`agm.methods.steering.fitting.FlowMatching`). Returns the
    EMA copy of the weights, in eval mode. (Before the move onto the Trainer this loop used Adam with a cosine
    learning-rate decay; the Trainer has no schedule, see docs/steering.md.)
    """
    from agm.methods.steering.fitting import FlowMatching, fit, train_config

    if data.dim() != 2 or not torch.isfinite(data).all():
        raise DataError(f"data must be a finite (N, D) tensor; got shape {tuple(data.shape)}")
    check_positive("steps", steps, integer=True)
    torch.manual_seed(seed)
    net = TimeMLP(data.shape[1], hidden=hidden, depth=depth)
    cfg = train_config(steps=steps, batch_size=batch, lr=lr, ema_decay=ema, grad_clip=grad_clip, log_every=max(1, steps))
    trainer, _ = fit(FlowMatching(net), data.float(), cfg, seed=seed)
    return trainer.ema["velocity"].model.eval()


@torch.no_grad()
def sample_flow(field, n: int, dim: int, *, steps: int = 100, method: str = "heun", seed: int = 0) -> Tensor:
    """ODE samples x(1) of dx/dt = field(x, t) from x(0) ~ N(0, I) (agm.samplers.ODESampler)."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, dim, generator=g)
    return ODESampler(steps=steps, method=method).sample(field, x0)
