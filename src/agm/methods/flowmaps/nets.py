"""Flow-map parameterisation on a manifold and its network (GFM, arXiv 2510.21608; docs/flowmaps.md (F1)).

    X_{s,t}(x) = exp_x((t - s) v_{s,t}(x)),   v_{s,t}(x) = proj_{T_x M}(f_theta(s, t, x))       (F1)

so X_{s,s} = id for any weights, the output lies on M, and the diagonal v_{t,t} is the ODE velocity
(tangent condition). With Euclidean operations this is the Euclidean flow map x + (t - s) v_{s,t}(x).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from agm.errors import check_positive
from agm.manifolds.base import Manifold
from agm.nets.mlp import MLP


def time_features(tau: Tensor, n_freq: int) -> Tensor:
    """Low-frequency features of a time in [0, 1]: [tau, sin(pi k tau), cos(pi k tau)], k = 1..n_freq.

    Low frequencies keep d/dt of the network moderate, which the JVP-based G-LSD/G-ESD targets need
    (our choice; the paper only says the network takes (s, t)).
    """
    k = torch.arange(1, n_freq + 1, dtype=tau.dtype, device=tau.device)
    a = math.pi * tau.reshape(-1, 1) * k
    return torch.cat([tau.reshape(-1, 1), torch.sin(a), torch.cos(a)], dim=-1)


class FlowMapMLP(nn.Module):
    """f_theta(s, t, x) -> ambient vector: an MLP on [features(x), time_features(s), time_features(t - s)].

    Times enter as s and t - s (our choice, docs/flowmaps.md). Output size = manifold.ambient_dim.
    """

    def __init__(self, manifold: Manifold, hidden: int = 256, depth: int = 3, n_freq: int = 4, act: str = "silu") -> None:
        super().__init__()
        check_positive("n_freq", n_freq, integer=True)
        self.manifold, self.n_freq = manifold, n_freq
        in_dim = manifold.features(torch.zeros(1, manifold.ambient_dim)).shape[-1] + 2 * (2 * n_freq + 1)
        self.net = MLP(in_dim, manifold.ambient_dim, hidden=hidden, depth=depth, act=act)

    def forward(self, s: Tensor, t: Tensor, x: Tensor) -> Tensor:
        feats = [self.manifold.features(x), time_features(s, self.n_freq), time_features(t - s, self.n_freq)]
        return self.net(torch.cat([f.to(x.dtype) for f in feats], dim=-1))


class FlowMap(nn.Module):
    """X_{s,t}(x) = exp_x((t - s) proj_x f(s, t, x)) (docs/flowmaps.md (F1)). ``net`` is any f(s, t, x) -> ambient vector.

    ``velocity(s, t, x)`` is v_{s,t}(x); ``velocity(t, t, x)`` is the learned ODE field v_t (tangent
    condition, docs/flowmaps.md (F1)), which the many-step Riemannian ODE sampler integrates.
    """

    def __init__(self, manifold: Manifold, net: nn.Module) -> None:
        super().__init__()
        self.manifold, self.net = manifold, net

    def velocity(self, s: Tensor, t: Tensor, x: Tensor) -> Tensor:
        """v_{s,t}(x) = proj_{T_x M} f(s, t, x) (``Manifold.to_tangent``; on H^d our transported variant)."""
        return self.manifold.to_tangent(x, self.net(s, t, x))

    def forward(self, s: Tensor, t: Tensor, x: Tensor) -> Tensor:
        """X_{s,t}(x) for times s, t of shape (B,) (or scalars, broadcast to the batch)."""
        s, t = _as_batch(s, x), _as_batch(t, x)
        return self.manifold.expmap(x, (t - s).reshape(-1, 1).to(x.dtype) * self.velocity(s, t, x))

    def field(self, x: Tensor, t: Tensor) -> Tensor:
        """The diagonal v_{t,t}(x) as a sampler field ``field(x, t)``."""
        t = _as_batch(t, x)
        return self.velocity(t, t, x)


def _as_batch(t: Tensor | float, x: Tensor) -> Tensor:
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.expand(x.shape[0]) if t.dim() == 0 else t
