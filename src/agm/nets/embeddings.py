"""Time embeddings."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class SinusoidalEmbedding(nn.Module):
    """Sinusoidal features of t in [0, 1] (Vaswani et al. / DDPM): [sin(w_k s t), cos(w_k s t)].

    ``scale`` maps t in [0, 1] to the usual range of positions (default 1000, as for DDPM steps).
    """

    def __init__(self, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> None:
        super().__init__()
        if dim < 2 or dim % 2:
            raise ValueError(f"time embedding dim={dim} must be an even integer >= 2")
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)
        self.scale = scale
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:
        if t.dim() == 0:
            t = t.reshape(1)
        args = (t.reshape(-1, 1).float() * self.scale) * self.freqs[None]
        return torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
