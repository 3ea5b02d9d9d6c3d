"""Samplers: integrators over any field. A drift/velocity is a callable ``field(x, t) -> Tensor`` with t of shape (B,)."""
from agm.samplers.euler_maruyama import EulerMaruyama
from agm.samplers.ode import ODESampler, integrate
from agm.samplers.base import Sampler, time_grid

__all__ = ["EulerMaruyama", "ODESampler", "Sampler", "integrate", "time_grid"]
