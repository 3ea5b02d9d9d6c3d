"""Score-based (unadjusted) Langevin sampling and a denoising score-matching fit: the baseline that
Bellman Diffusion compares with on unbalanced mixtures (Bellman Diffusion sec. 1 and Fig. 2;
docs/bellman.md).

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

from agm.errors import check_positive
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


class ScoreMethod(nn.Module):
    """A ScoreNet fitted by denoising score matching, as a method of :class:`agm.training.Trainer`."""

    ema_names = ("score",)

    def __init__(self, dim: int, sigma: float, hidden: int = 128, depth: int = 3) -> None:
        super().__init__()
        check_positive("score.sigma", sigma)
        self.score = ScoreNet(dim, hidden, depth)
        self.sigma = sigma

    def networks(self) -> dict[str, nn.Module]:
        return {"score": self.score}

    def loss(self, batch: Tensor, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, Tensor]]:
        loss = dsm_loss(self.score, batch, self.sigma, generator=generator).mean()
        return loss, {"loss": loss.detach()}


def train_score(
    x: Tensor, *, sigma: float = 0.1, steps: int = 2000, batch_size: int = 512, lr: float = 1e-3, hidden: int = 128, depth: int = 3,
    seed: int = 0, grad_clip: float = 0.0, ema_decay: float = 0.99, schedule: str = "constant", device: str = "cpu",
) -> ScoreNet:
    """Fit a ScoreNet by denoising score matching at noise level sigma with the shared :class:`agm.training.Trainer`
    (AdamW, EMA, NaN guard); returns the EMA network (the raw one when ema_decay = 0)."""
    from agm.methods.bellman.fields import RowBatches
    from agm.training.config import TrainConfig
    from agm.training.trainer import Trainer

    check_positive("train.steps", steps, integer=True)
    batches = RowBatches(x, batch_size)
    torch.manual_seed(seed)
    method = ScoreMethod(x.shape[1], sigma, hidden, depth).to(device)
    cfg = TrainConfig(steps=steps, batch_size=batches.batch_size, lr=lr, grad_clip=grad_clip, ema_decay=ema_decay, log_every=steps,
                      ckpt_every=steps, tensorboard=False, progress=False, device=device, schedule=schedule)
    trainer = Trainer(method, batches, cfg, seed=seed)
    trainer.fit()
    return trainer.ema["score"].model if ema_decay > 0 else method.score.eval()
