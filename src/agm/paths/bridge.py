"""Brownian bridge / stochastic interpolant between a prior (t = 0) and the data (t = 1).

Equations (docs/agm.md; standard bridge matching):

    x_t = (1 - t) x_0 + t x_1 + sigma sqrt(t (1 - t)) eps,            eps ~ N(0, I)
    u_t = (x_1 - x_t) / (1 - t) = x_1 - x_0 - sigma sqrt(t / (1 - t)) eps

``u_t`` is the drift of the pinned bridge SDE dX = (x_1 - X)/(1 - t) dt + sigma dW; its conditional
expectation E[u_t | x_t = x] is the Markovian drift whose SDE dX = f*(X, t) dt + sigma dW carries the
prior to the data. sigma = 0 gives the linear flow-matching (rectified flow) path with target
x_1 - x_0. The target's variance grows like sigma^2 t / (1 - t), so training draws t from
U[t_min, t_max] with t_max < 1 when sigma > 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from agm.tensors import expand_time as _bcast
from agm.errors import ConfigError


@dataclass
class PathSample:
    """One draw of the path: the point x_t, the time t (shape (B,)), the regression target and the noise."""

    xt: Tensor
    t: Tensor
    target: Tensor
    eps: Tensor


class BrownianBridge:
    """Brownian bridge with diffusion coefficient ``sigma`` >= 0 (sigma = 0: linear path).

    Args:
        sigma: bridge noise scale; also the sampler's diffusion coefficient.
        t_min, t_max: training times are drawn from U[t_min, t_max]; t_max < 1 keeps the target finite.
    """

    def __init__(self, sigma: float = 0.0, t_min: float = 0.0, t_max: float = 1.0) -> None:
        if not isinstance(sigma, (int, float)) or sigma < 0:
            raise ConfigError(f"path.sigma={sigma!r} is not accepted; it must be a number >= 0")
        if not (0.0 <= t_min < t_max <= 1.0):
            raise ConfigError(f"path.t_min={t_min!r}, path.t_max={t_max!r} must satisfy 0 <= t_min < t_max <= 1")
        if sigma > 0 and t_max >= 1.0:
            raise ConfigError(f"path.t_max={t_max!r} must be < 1 when path.sigma > 0 (the target diverges at t = 1)")
        self.sigma = float(sigma)
        self.t_min = float(t_min)
        self.t_max = float(t_max)

    def sample_t(self, n: int, *, generator: torch.Generator | None = None, device=None) -> Tensor:
        """t ~ U[t_min, t_max], shape (n,)."""
        u = torch.rand(n, generator=generator, device=device)
        return self.t_min + (self.t_max - self.t_min) * u

    def mean(self, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
        """E[x_t | x_0, x_1] = (1 - t) x_0 + t x_1."""
        tb = _bcast(t, x0)
        return (1 - tb) * x0 + tb * x1

    def std(self, t: Tensor) -> Tensor:
        """Standard deviation of x_t given the endpoints: sigma sqrt(t (1 - t))."""
        return self.sigma * torch.sqrt((t * (1 - t)).clamp_min(0.0))

    def sample(
        self,
        x0: Tensor,
        x1: Tensor,
        t: Tensor | None = None,
        *,
        eps: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> PathSample:
        """Draw x_t and the drift target u_t for paired endpoints (x0[i], x1[i])."""
        if x0.shape != x1.shape:
            raise ValueError(f"x0 shape {tuple(x0.shape)} and x1 shape {tuple(x1.shape)} must match")
        if t is None:
            t = self.sample_t(x0.shape[0], generator=generator, device=x0.device)
        t = t.to(x0.dtype)
        if eps is None:
            eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        tb = _bcast(t, x0)
        xt = self.mean(x0, x1, t) + _bcast(self.std(t), x0) * eps
        target = self.target(x0, x1, t, eps)
        return PathSample(xt=xt, t=t, target=target, eps=eps)

    def target(self, x0: Tensor, x1: Tensor, t: Tensor, eps: Tensor) -> Tensor:
        """u_t = x_1 - x_0 - sigma sqrt(t / (1 - t)) eps (equal to (x_1 - x_t) / (1 - t))."""
        tb = _bcast(t, x0)
        if self.sigma == 0.0:
            return x1 - x0
        return x1 - x0 - self.sigma * torch.sqrt(tb / (1 - tb)) * eps


def gaussian_bridge_marginal(t: float, m0: Tensor, s0: float, m1: Tensor, s1: float, sigma: float) -> tuple[Tensor, float]:
    """Marginal of x_t for independent x_0 ~ N(m0, s0^2 I), x_1 ~ N(m1, s1^2 I).

    x_t ~ N((1-t) m0 + t m1, [(1-t)^2 s0^2 + t^2 s1^2 + sigma^2 t (1-t)] I). Returns (mean, std).
    """
    var = (1 - t) ** 2 * s0**2 + t**2 * s1**2 + sigma**2 * t * (1 - t)
    return (1 - t) * m0 + t * m1, float(var) ** 0.5


def gaussian_optimal_drift(m0: Tensor, s0: float, m1: Tensor, s1: float, sigma: float):
    """Closed-form Markovian drift f*(x, t) = E[u_t | x_t = x] for Gaussian endpoints (test oracle).

    With x_t = a x_0 + b x_1 + c eps (a = 1-t, b = t, c = sigma sqrt(t(1-t))) and
    u_t = x_1 - x_0 - (sigma sqrt(t/(1-t))) eps, both jointly Gaussian, so
    E[u | x_t = x] = E[u] + Cov(u, x_t) / Var(x_t) (x - E[x_t])   (per coordinate, isotropic).
    Returns a callable f(x, t) with t of shape (B,).
    """

    def drift(x: Tensor, t: Tensor) -> Tensor:
        tb = _bcast(t.to(x.dtype), x)
        a, b = 1 - tb, tb
        c2 = sigma**2 * tb * (1 - tb)
        var_x = a**2 * s0**2 + b**2 * s1**2 + c2
        # Cov(u, x_t) = b s1^2 - a s0^2 - k c   (c = sigma sqrt(t(1-t)), k c = sigma^2 t)
        cov = b * s1**2 - a * s0**2 - sigma**2 * tb
        mean_x = a * m0 + b * m1
        mean_u = m1 - m0
        return mean_u + cov / var_x * (x - mean_x)

    return drift
