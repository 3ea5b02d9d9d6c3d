"""Variance-preserving (VP / DDPM) diffusion path in agm's time convention (noise at t = 0, data at t = 1).

Song et al. (2021), "Score-Based Generative Modeling through SDEs", eqs. (11) and (29)-(33) (the VP
SDE, the continuous limit of DDPM, Ho et al. 2020), re-expressed in reversed time t = 1 - tau, where
tau is the usual diffusion time (data at tau = 0). The linear schedule is
beta(tau) = beta_min + tau (beta_max - beta_min), so in our time

    a(t) = exp(-1/2 int_t^1 beta(1 - r) dr) = exp(-1/2 [beta_min tau + 1/2 (beta_max - beta_min) tau^2]),  tau = 1 - t
    s(t) = sqrt(1 - a(t)^2)
    x_t  = a(t) x_1 + s(t) eps,   eps ~ N(0, I)                          (epsilon-prediction target: eps)

The forward SDE in tau, dx = -1/2 beta(tau) x dtau + sqrt(beta(tau)) dW, has the reverse-time SDE
(Anderson 1982; Song et al. eq. 6) which, with dt = -dtau, runs forwards in our t:

    dx = beta(1 - t) [x / 2 + score(x, t)] dt + sqrt(beta(1 - t)) dW,     score = -eps_hat / s(t)

and the probability-flow ODE  dx/dt = 1/2 beta(1 - t) [x + score(x, t)]  (Song et al. eq. 13).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from agm.tensors import expand_time as _bcast
from agm.errors import ConfigError, check_positive
from agm.paths.bridge import PathSample

EpsModel = Callable[[Tensor, Tensor], Tensor]


class VPPath:
    """VP (DDPM) path with a linear beta schedule, noise at t = 0 and data at t = 1.

    Args:
        beta_min, beta_max: the linear schedule beta(tau) = beta_min + tau (beta_max - beta_min), 0 < beta_min <= beta_max.
        t_min, t_max: training times are drawn from U[t_min, t_max]; t_max < 1 avoids s(t) = 0 at the data end.
        sigma_floor: lower bound on s(t) used when dividing by it (score_from_eps).
    """

    def __init__(
        self,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        t_min: float = 0.0,
        t_max: float = 1.0 - 1e-3,
        sigma_floor: float = 1e-4,
    ) -> None:
        check_positive("path.beta_min", beta_min)
        check_positive("path.beta_max", beta_max)
        check_positive("path.sigma_floor", sigma_floor)
        if beta_max < beta_min:
            raise ConfigError(f"path.beta_max={beta_max!r} must be >= path.beta_min={beta_min!r}")
        if not (0.0 <= t_min < t_max <= 1.0):
            raise ConfigError(f"path.t_min={t_min!r}, path.t_max={t_max!r} must satisfy 0 <= t_min < t_max <= 1")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.t_min, self.t_max = float(t_min), float(t_max)
        self.sigma_floor = float(sigma_floor)

    # --- schedule -------------------------------------------------------------------------------
    def beta(self, t: Tensor) -> Tensor:
        """beta(1 - t) = beta_min + (1 - t)(beta_max - beta_min): the VP rate at our time t."""
        return self.beta_min + (1.0 - t) * (self.beta_max - self.beta_min)

    def log_alpha(self, t: Tensor) -> Tensor:
        """log a(t) = -1/2 [beta_min tau + (beta_max - beta_min) tau^2 / 2], tau = 1 - t."""
        tau = 1.0 - t
        return -0.5 * (self.beta_min * tau + 0.5 * (self.beta_max - self.beta_min) * tau**2)

    def alpha(self, t: Tensor) -> Tensor:
        """Signal coefficient a(t) = exp(-1/2 int_t^1 beta(1 - r) dr); a(1) = 1 (data)."""
        return torch.exp(self.log_alpha(torch.as_tensor(t)))

    def sigma(self, t: Tensor) -> Tensor:
        """Noise coefficient s(t) = sqrt(1 - a(t)^2) (computed as sqrt(-expm1(2 log a)) for accuracy)."""
        return torch.sqrt(-torch.expm1(2.0 * self.log_alpha(torch.as_tensor(t))))

    def sample_t(self, n: int, *, generator: torch.Generator | None = None, device=None) -> Tensor:
        """t ~ U[t_min, t_max], shape (n,)."""
        u = torch.rand(n, generator=generator, device=device)
        return self.t_min + (self.t_max - self.t_min) * u

    # --- path -----------------------------------------------------------------------------------
    def sample(
        self,
        x1: Tensor,
        t: Tensor | None = None,
        *,
        eps: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> PathSample:
        """x_t = a(t) x_1 + s(t) eps, with the epsilon-prediction target ``eps`` (PathSample.target = eps)."""
        if t is None:
            t = self.sample_t(x1.shape[0], generator=generator, device=x1.device)
        t = t.to(x1.dtype)
        if eps is None:
            eps = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
        xt = _bcast(self.alpha(t), x1) * x1 + _bcast(self.sigma(t), x1) * eps
        return PathSample(xt=xt, t=t, target=eps, eps=eps)

    def prior(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None, dtype=torch.float32) -> Tensor:
        """Draw x_0 ~ N(0, I) (the VP marginal at t = 0 is N(a(0) m, a(0)^2 C + s(0)^2 I), a(0) ~ 7e-3 by default)."""
        return torch.randn(shape, generator=generator, dtype=dtype)

    def score_from_eps(self, eps_pred: Tensor, t: Tensor) -> Tensor:
        """grad_x log p_t(x) = -eps_hat(x, t) / s(t) (Song et al. 2021, sec. 3.3; s floored at sigma_floor)."""
        s = self.sigma(t.to(eps_pred.dtype)).clamp_min(self.sigma_floor)
        return -eps_pred / _bcast(s, eps_pred)

    def reverse_sde(self, eps_model: EpsModel) -> tuple[Callable[[Tensor, Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]]:
        """(drift, diffusion) of the reverse VP SDE in our time, for ``EulerMaruyama(t0=0, t1=1)``.

        drift(x, t) = beta(1 - t) [x / 2 + score(x, t)],  diffusion(x, t) = sqrt(beta(1 - t))  (Song et al. eq. 6 / 29).
        """

        def drift(x: Tensor, t: Tensor) -> Tensor:
            b = _bcast(self.beta(t.to(x.dtype)), x)
            return b * (0.5 * x + self.score_from_eps(eps_model(x, t), t))

        def diffusion(x: Tensor, t: Tensor) -> Tensor:
            return _bcast(self.beta(t.to(x.dtype)).sqrt(), x)

        return drift, diffusion

    def probability_flow(self, eps_model: EpsModel) -> Callable[[Tensor, Tensor], Tensor]:
        """Velocity of the probability-flow ODE dx/dt = 1/2 beta(1 - t) [x + score(x, t)] (Song et al. eq. 13), for ``ODESampler``."""

        def velocity(x: Tensor, t: Tensor) -> Tensor:
            b = _bcast(self.beta(t.to(x.dtype)), x)
            return 0.5 * b * (x + self.score_from_eps(eps_model(x, t), t))

        return velocity


def gaussian_eps_predictor(path: VPPath, mean: Tensor | float, std: float) -> EpsModel:
    """Exact eps-predictor for data N(mean, std^2 I) (test oracle).

    x_t ~ N(a m, (a^2 std^2 + s^2) I), and (eps, x_t) are jointly Gaussian with Cov = s, so
    E[eps | x_t = x] = s / (a^2 std^2 + s^2) (x - a m).
    """

    def eps_model(x: Tensor, t: Tensor) -> Tensor:
        a = _bcast(path.alpha(t.to(x.dtype)), x)
        s = _bcast(path.sigma(t.to(x.dtype)), x)
        return s / (a**2 * std**2 + s**2) * (x - a * torch.as_tensor(mean, dtype=x.dtype))

    return eps_model
