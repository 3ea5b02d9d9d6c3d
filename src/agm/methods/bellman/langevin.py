"""Score-based (unadjusted) Langevin sampling and a denoising score-matching fit: the baseline that
Bellman Diffusion compares with on unbalanced mixtures (Bellman Diffusion sec. 1 and Fig. 2;
bellman-diffusion-digest.md sec. 4.4).

Langevin dynamics  dx = grad log p(x) dt + sqrt(2) dW,  Euler-Maruyama:
    x_{k+1} = x_k + eta s(x_k) + sqrt(2 eta) xi_k
(Roberts & Tweedie 1996; Song & Ermon 2019 for a learned score s ~ grad log p).

Denoising score matching (Vincent 2011): for x~ = x + sigma z,
    l(x) = || s(x~) + z / sigma ||^2,  minimiser s = grad log (p * N(0, sigma^2 I)).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from agm.errors import DataError, check_positive
from agm.nets import MLP
from agm.samplers.euler_maruyama import EulerMaruyama

XField = Callable[[Tensor], Tensor]


class LangevinDynamics:
    """Unadjusted Langevin sampler x_{k+1} = x_k + eta s(x_k) + sqrt(2 eta) xi_k over a score s(x) (time-free).

    Args:
        steps: number of steps; step_size: eta > 0.
    """

    def __init__(self, steps: int = 1000, step_size: float = 1e-2) -> None:
        check_positive("sampler.steps", steps, integer=True)
        check_positive("sampler.step_size", step_size)
        self.steps, self.step_size = steps, step_size

    @torch.no_grad()
    def sample(self, field: XField, x0: Tensor, *, generator: torch.Generator | None = None, return_trajectory: bool = False) -> Tensor:
        """Integrate dx = s(x) dt + sqrt(2) dW for steps * step_size time units from x0."""
        em = EulerMaruyama(steps=self.steps, t0=0.0, t1=self.steps * self.step_size, noise_last_step=True)
        return em.sample(lambda x, t: field(x), x0, 2.0**0.5, generator=generator, return_trajectory=return_trajectory)


class ScoreNet(nn.Module):
    """s_psi : R^d -> R^d, a time-free score network (the Langevin baseline)."""

    def __init__(self, dim: int, hidden: int = 128, depth: int = 3, act: str = "silu") -> None:
        super().__init__()
        self.net = MLP(dim, dim, hidden=hidden, depth=depth, act=act)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def dsm_loss(score: XField, x: Tensor, sigma: float, *, generator: torch.Generator | None = None) -> Tensor:
    """Per-sample denoising score-matching loss sigma^2 || s(x + sigma z) + z / sigma ||^2 (Vincent 2011), shape (B,)."""
    check_positive("score.sigma", sigma)
    z = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    return (sigma * score(x + sigma * z) + z).pow(2).sum(-1)


def train_score(
    x: Tensor, *, sigma: float = 0.1, steps: int = 2000, batch_size: int = 512, lr: float = 1e-3, hidden: int = 128, depth: int = 3, seed: int = 0
) -> ScoreNet:
    """Fit a ScoreNet by denoising score matching at noise level sigma with Adam (baseline trainer)."""
    check_positive("train.steps", steps, integer=True)
    if x.dim() != 2 or not torch.isfinite(x).all():
        raise DataError(f"training data must be a finite (N, d) tensor; got shape {tuple(x.shape)}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = ScoreNet(x.shape[1], hidden, depth)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    bs = min(batch_size, x.shape[0])
    for _ in range(steps):
        idx = torch.randperm(x.shape[0], generator=gen)[:bs]
        loss = dsm_loss(net, x[idx], sigma, generator=gen).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net
