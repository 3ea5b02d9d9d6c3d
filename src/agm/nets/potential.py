"""Scalar potential heads V_phi(x, t) sized by a parameter budget relative to the drift.

AGM (arXiv 2605.14631, abstract; docs/agm.md): V_phi takes the drift's inputs, returns
one scalar per sample, and has about 1.4% of the drift's parameters. The width is solved from the
budget; ``param_ratio`` reports the ratio actually reached.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agm.errors import ConfigError
from agm.nets.embeddings import SinusoidalEmbedding
from agm.nets.mlp import TimeMLP


def count_params(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class PotentialMLP(nn.Module):
    """V_phi(x, t) for vectors: a narrow time-conditioned MLP with one output; returns shape (B,)."""

    def __init__(self, dim: int, width: int, depth: int = 2, time_dim: int = 16) -> None:
        super().__init__()
        self.net = TimeMLP(dim, hidden=width, depth=depth, time_dim=time_dim, out_dim=1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(x, t).squeeze(-1)


class PotentialConv(nn.Module):
    """V_phi(x, t) for images: strided conv encoder + time embedding, global pooling, linear head; returns (B,).

    h_0 = SiLU(Conv_{s0}(x)) + W_t sinusoidal(t);  h_k = SiLU(Conv_{stride 2}(h_{k-1})), k = 1..levels-1;
    V = w^T mean_{H,W}(h_{levels-1}) + b.   (docs/agm.md: "a small strided-conv encoder with
    global pooling and the same time embedding, then a linear head"; the paper gives no architecture.)
    ``first_stride`` s0 = 2 halves the cost of the full-resolution layer (used for images >= 32 pixels so
    that the potential's step cost stays near 1% of the drift's: our goal AGM/drift <= 1.02).
    """

    def __init__(self, in_channels: int, width: int, levels: int = 3, time_dim: int = 16, first_stride: int = 1) -> None:
        super().__init__()
        if first_stride not in (1, 2):
            raise ConfigError(f"potential first_stride={first_stride!r} is not accepted; accepted: 1 or 2")
        self.time_embed = nn.Sequential(SinusoidalEmbedding(time_dim), nn.Linear(time_dim, width))
        convs = []
        c = in_channels
        for i in range(levels):
            convs.append(nn.Conv2d(c, width, 3, stride=2 if i else first_stride, padding=1))
            c = width
        self.convs = nn.ModuleList(convs)
        self.head = nn.Linear(width, 1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        h = F.silu(self.convs[0](x)) + self.time_embed(t).to(x.dtype)[:, :, None, None]
        for conv in self.convs[1:]:
            h = F.silu(conv(h))
        return self.head(h.float().mean(dim=(2, 3)).to(h.dtype)).squeeze(-1)


def _largest_width(make: Callable[[int], nn.Module], budget: float) -> nn.Module:
    """Largest width w >= 1 whose module has <= budget parameters (parameter count is monotone in w)."""
    lo, hi = 1, 1
    while count_params(make(hi)) <= budget and hi < 1 << 16:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if count_params(make(mid)) <= budget:
            lo = mid
        else:
            hi = mid
    return make(lo)


def build_potential(
    drift: nn.Module,
    data_shape: Sequence[int],
    budget: float = 0.014,
    depth: int = 2,
    time_dim: int = 16,
) -> tuple[nn.Module, float]:
    """Build V_phi with at most ``budget`` x (drift's parameters) parameters.

    ``data_shape`` is one sample's shape: (D,) gives a PotentialMLP, (C, H, W) a PotentialConv (first
    conv strided by 2 when H, W >= 32). AGM (arXiv 2605.14631, abstract): V_phi has ~1.4% of the drift's
    parameters; the width is the largest whose count is <= budget * count(drift) (docs/agm.md).
    Returns (potential, actual_ratio). If even width 1 exceeds the budget, width 1 is used and the
    reported ratio says so.
    """
    if not (0 < budget <= 1):
        raise ConfigError(f"potential.budget={budget!r} is not accepted; it must be in (0, 1]")
    n_drift = count_params(drift)
    target = budget * n_drift
    if len(data_shape) == 1:
        make = lambda w: PotentialMLP(data_shape[0], w, depth=depth, time_dim=time_dim)  # noqa: E731
    elif len(data_shape) == 3:
        stride = 2 if min(data_shape[1:]) >= 32 else 1
        make = lambda w: PotentialConv(data_shape[0], w, levels=max(depth, 1) + 1, time_dim=time_dim, first_stride=stride)  # noqa: E731
    else:
        raise ConfigError(f"data shape {tuple(data_shape)} is not supported; accepted: (D,) vectors or (C, H, W) images")
    pot = _largest_width(make, target)
    return pot, count_params(pot) / n_drift
