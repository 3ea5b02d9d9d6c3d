"""A state-conditioned flow-matching policy pi(a | s) and input normalisation.

Velocity v_theta(a_t, t; s) on the linear OT path a_t = (1 - t) a_0 + t a_1, a_0 ~ N(0, I), a_1 = the
(normalised) action, target a_1 - a_0 (arXiv 2503.04975 section 3, with x = a, conditioned on s).
Actions are mapped affinely from the environment's box [low, high] to [-1, 1]; sampling integrates the
ODE from t = 0 to 1 (Euler or Heun, ``steps``) and clips to [-1, 1]. This is QIPO-OT's policy (arXiv 2503.04975 section 5).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from agm.errors import DataError, check_positive
from agm.nets import TimeMLP
from agm.objectives.bridge_matching import per_sample_mse
from agm.paths import BrownianBridge
from agm.samplers import ODESampler


class Normalizer(nn.Module):
    """x -> (x - mean) / std with fixed buffers (std floored at 1e-3), fitted on the data set's observations."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("std", std.float().clamp_min(1e-3).clone())

    @classmethod
    def fit(cls, x: Tensor) -> "Normalizer":
        return cls(x.mean(0), x.std(0))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


class ActionScaler(nn.Module):
    """Affine map between the action box [low, high] and [-1, 1]."""

    def __init__(self, low: Tensor, high: Tensor) -> None:
        super().__init__()
        low, high = torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)
        if low.shape != high.shape or not bool((high > low).all()):
            raise DataError(f"action bounds low={low.tolist()}, high={high.tolist()}; accepted: equal shapes with high > low")
        self.register_buffer("low", low)
        self.register_buffer("high", high)

    def normalize(self, a: Tensor) -> Tensor:
        return 2 * (a - self.low) / (self.high - self.low) - 1

    def unnormalize(self, a: Tensor) -> Tensor:
        return self.low + (a.clamp(-1, 1) + 1) * (self.high - self.low) / 2


class FlowPolicy(nn.Module):
    """Conditional flow-matching policy: v_theta([a_t, norm(s)], t) from ``agm.nets.TimeMLP`` (module docstring)."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        obs_norm: Normalizer,
        *,
        hidden: int = 256,
        depth: int = 3,
        steps: int = 10,
        method: str = "euler",
    ) -> None:
        super().__init__()
        check_positive("obs_dim", obs_dim, integer=True)
        check_positive("act_dim", act_dim, integer=True)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.obs_norm = obs_norm
        self.net = TimeMLP(act_dim + obs_dim, hidden=hidden, depth=depth, out_dim=act_dim)
        self.sampler = ODESampler(steps, method)
        self.path = BrownianBridge(0.0)

    def velocity(self, a: Tensor, t: Tensor, obs: Tensor) -> Tensor:
        """v_theta(a_t, t; s) for a (B, act_dim), t (B,), obs (B, obs_dim) (raw observations)."""
        return self.net(torch.cat([a, self.obs_norm(obs)], dim=-1), t)

    def per_sample_loss(self, obs: Tensor, actions: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """l_i = (1/d) || v_theta(a_t^i, t_i; s_i) - (a_1^i - a_0^i) ||^2 for normalised actions (B, act_dim)."""
        a0 = torch.randn(actions.shape, generator=generator)
        s = self.path.sample(a0, actions, generator=generator)
        return per_sample_mse(self.velocity(s.xt, s.t, obs), s.target)

    @torch.no_grad()
    def sample(self, obs: Tensor, n: int = 1, *, generator: torch.Generator | None = None, sampler: ODESampler | None = None) -> Tensor:
        """n normalised actions per state: (B, n, act_dim) in [-1, 1] (ODE from N(0, I) at t = 0 to t = 1), with the
        policy's own sampler or ``sampler`` (e.g. more steps at evaluation than for the support actions)."""
        B = obs.shape[0]
        o = obs.repeat_interleave(n, 0)
        a0 = torch.randn(B * n, self.act_dim, generator=generator)
        a = (self.sampler if sampler is None else sampler).sample(lambda x, t: self.velocity(x, t, o), a0)
        return a.clamp(-1, 1).reshape(B, n, self.act_dim)
