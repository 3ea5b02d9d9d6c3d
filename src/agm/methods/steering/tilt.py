"""Tilted targets p(x) exp(r(x)) / Z with known optimum, rewards, data and distances for steering.

All three steering methods of issue 6 are judged against the same object: the tilt of a base law
by a known reward (arXiv 2306.01804; arXiv 2409.08861:
p*(x) ∝ p_base(x) exp(lambda r(x))).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from agm.errors import ConfigError, DataError, check_choice, check_positive

Reward = Callable[[Tensor], Tensor]


def check_reward_values(values: Tensor, name: str = "reward") -> Tensor:
    """Raise DataError unless a reward's output is finite and of shape (B,)."""
    if values.dim() != 1:
        raise DataError(f"{name} returned shape {tuple(values.shape)}; expected (B,) (one scalar per sample)")
    if not torch.isfinite(values).all():
        bad = int((~torch.isfinite(values)).sum())
        raise DataError(f"{name} returned {bad} non-finite value(s) (NaN/inf); rewards must be finite for every sample")
    return values


class LinearReward:
    """r(x) = a^T x (arXiv 2409.08861 linear reward; arXiv 2306.01804)."""

    def __init__(self, a: list[float] | Tensor) -> None:
        self.a = torch.as_tensor(a, dtype=torch.float32).reshape(-1)

    def __call__(self, x: Tensor) -> Tensor:
        return x @ self.a.to(x.dtype)


class QuadraticReward:
    """r(x) = -(q / 2) ||x - c||^2 (arXiv 2409.08861 quadratic reward)."""

    def __init__(self, c: list[float] | Tensor, q: float = 1.0) -> None:
        check_positive("q", float(q))
        self.c = torch.as_tensor(c, dtype=torch.float32).reshape(-1)
        self.q = float(q)

    def __call__(self, x: Tensor) -> Tensor:
        return -0.5 * self.q * (x - self.c.to(x.dtype)).pow(2).sum(-1)


REWARDS = ("linear", "quadratic")


def make_reward(name: str, dim: int, scale: float = 1.0) -> Reward:
    """Reward by name: 'linear' r = scale * x_1 (first coordinate); 'quadratic' r = -(scale/2)||x - (1, .., 1)||^2."""
    check_choice("reward", name, REWARDS)
    if name == "linear":
        a = torch.zeros(dim)
        a[0] = scale
        return LinearReward(a)
    return QuadraticReward(torch.ones(dim), q=scale)


def tilted_rejection_sample(x: Tensor, log_w: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Rejection sampling of q ∝ p exp(log_w) from samples x ~ p: accept x_i with prob exp(log_w_i - max log_w).

    Exact when max over the pool bounds log_w on the support of p (true for bounded rewards on bounded
    data); otherwise exact up to the mass of p above the pool's maximum. Returns the accepted rows.
    """
    check_reward_values(log_w, "log_w")
    u = torch.rand(log_w.shape, generator=generator, dtype=log_w.dtype)
    keep = torch.log(u) < (log_w - log_w.max())
    return x[keep]


def gaussian_tilt_linear(mu: Tensor, cov: Tensor, a: Tensor, lam: float = 1.0) -> tuple[Tensor, Tensor]:
    """N(mu, S) tilted by exp(lam a^T x) is N(mu + lam S a, S) (arXiv 2503.04975, arXiv 2409.08861)."""
    return mu + lam * cov @ a, cov


def gaussian_tilt_quadratic(mu: Tensor, cov: Tensor, c: Tensor, q: float, lam: float = 1.0) -> tuple[Tensor, Tensor]:
    """N(mu, S) tilted by exp(-lam q/2 ||x - c||^2): S* = (S^-1 + lam q I)^-1, m* = S*(S^-1 mu + lam q c)."""
    d = mu.numel()
    si = torch.linalg.inv(cov)
    s = torch.linalg.inv(si + lam * q * torch.eye(d, dtype=cov.dtype))
    return s @ (si @ mu + lam * q * c), s


# --------------------------------------------------------------------------------------------- data
def _eight_gaussians(n: int, g: torch.Generator) -> Tensor:
    ang = torch.randint(0, 8, (n,), generator=g).float() * (2 * math.pi / 8)
    centres = 2.0 * torch.stack([torch.cos(ang), torch.sin(ang)], 1)
    return centres + 0.3 * torch.randn(n, 2, generator=g)


def _moons(n: int, g: torch.Generator) -> Tensor:
    k = torch.randint(0, 2, (n,), generator=g).float()
    th = torch.rand(n, generator=g) * math.pi
    x = torch.where(k > 0, 1 - torch.cos(th), torch.cos(th))
    y = torch.where(k > 0, 0.5 - torch.sin(th), torch.sin(th))
    pts = torch.stack([x, y], 1) + 0.08 * torch.randn(n, 2, generator=g)
    return (pts - torch.tensor([0.5, 0.25])) * 1.5


def toy_data(name: str, n: int, seed: int = 0) -> Tensor:
    """Built-in 2-D/1-D data: ``agm.data.toy.make_toy`` when it exists, else a local fallback for
    '8gaussians' and 'moons' (so experiments run before the data module lands)."""
    try:
        from agm.data.toy import make_toy  # type: ignore

        return make_toy(name, n, seed=seed).float()
    except ImportError:
        check_choice("dataset", name, ("8gaussians", "moons"))
        g = torch.Generator().manual_seed(seed)
        return (_eight_gaussians if name == "8gaussians" else _moons)(n, g)


# ---------------------------------------------------------------------------------------- metrics
# distances between sample sets: agm.metrics.energy_distance / agm.metrics.wasserstein2 (one function per concept)
def gaussian_kl(m1: Tensor, c1: Tensor, m2: Tensor, c2: Tensor) -> float:
    """KL(N(m1, C1) || N(m2, C2)) in closed form."""
    d = m1.numel()
    c2i = torch.linalg.inv(c2)
    dm = (m2 - m1).reshape(-1, 1)
    val = torch.trace(c2i @ c1) + (dm.T @ c2i @ dm).squeeze() - d + torch.logdet(c2) - torch.logdet(c1)
    return float(0.5 * val)


def require_same_dim(field_a: str, dim_a: int, field_b: str, dim_b: int) -> None:
    """Raise ConfigError when two models/data disagree on the data dimension."""
    if dim_a != dim_b:
        raise ConfigError(f"{field_b} has data dimension {dim_b} but {field_a} has {dim_a}; both must act on the same space")
