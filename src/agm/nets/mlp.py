"""Multi-layer perceptrons for vector data."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from agm.errors import check_positive
from agm.nets.embeddings import SinusoidalEmbedding

_ACTS: dict[str, Callable[[], nn.Module]] = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "softplus": nn.Softplus}


def activation(name: str) -> nn.Module:
    """Activation module by name (silu, relu, gelu, tanh, softplus)."""
    if name not in _ACTS:
        from agm.errors import check_choice

        check_choice("activation", name, _ACTS)
    return _ACTS[name]()


class MLP(nn.Module):
    """Plain MLP: in_dim -> [hidden] * depth -> out_dim."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 256, depth: int = 3, act: str = "silu") -> None:
        super().__init__()
        check_positive("hidden", hidden, integer=True)
        check_positive("depth", depth, integer=True)
        layers: list[nn.Module] = []
        d = in_dim
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), activation(act)]
            d = hidden
        layers.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class TimeMLP(nn.Module):
    """Time-conditioned MLP f(x, t) for vectors x of shape (B, dim), t of shape (B,).

    The input is [x, emb(t)] where emb is a sinusoidal embedding followed by a linear layer.
    ``out_dim`` defaults to ``dim`` (a vector field); out_dim = 1 gives a scalar field.
    """

    def __init__(
        self,
        dim: int,
        hidden: int = 256,
        depth: int = 3,
        time_dim: int = 32,
        out_dim: int | None = None,
        act: str = "silu",
    ) -> None:
        super().__init__()
        check_positive("dim", dim, integer=True)
        self.dim = dim
        self.out_dim = dim if out_dim is None else out_dim
        self.time_embed = nn.Sequential(SinusoidalEmbedding(time_dim), nn.Linear(time_dim, time_dim), activation(act))
        self.net = MLP(dim + time_dim, self.out_dim, hidden=hidden, depth=depth, act=act)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        return self.net(torch.cat([x, self.time_embed(t).to(x.dtype)], dim=-1))
