"""The shared sampler interface.

A sampler integrates x from ``t0`` to ``t1`` over a uniform (or given) time grid and is called as
``sampler.sample(field, x0, ...)`` where ``field(x, t) -> Tensor`` returns a vector field of x's
shape and t has shape (B,). Samplers hold their settings (steps, noise) and nothing else, so the same
sampler runs over any trained field (a drift, a velocity, Bellman Diffusion's gradient field, ...).
"""
from __future__ import annotations

from typing import Callable, Protocol, Union

import torch
from torch import Tensor

from agm.errors import ConfigError

Field = Callable[[Tensor, Tensor], Tensor]
Diffusion = Union[float, Callable[[Tensor, Tensor], Tensor]]


def time_grid(steps: int, t0: float = 0.0, t1: float = 1.0, dtype=torch.float32, device=None) -> Tensor:
    """Uniform grid of steps + 1 times from t0 to t1."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps <= 0:
        raise ConfigError(f"steps={steps!r} is not accepted; it must be an integer > 0")
    return torch.linspace(t0, t1, steps + 1, dtype=dtype, device=device)


class Sampler(Protocol):
    """What every sampler offers."""

    def sample(self, field: Field, x0: Tensor, **kwargs) -> Tensor: ...
