"""The steering tasks' in-memory fits, all through the shared :class:`agm.training.Trainer` (house rule 4).

Each task is a Trainer method (``networks()``, ``ema_names``, ``loss(batch, step, generator)``):

* :class:`FlowMatching`      linear flow matching of a velocity net (the frozen base / expert models);
* :class:`SOCFineTuning`     one SOC loss of :mod:`agm.methods.steering.soc` on the fine-tuned velocity;
* :class:`RewardRegression`  the relative-reward regression of :mod:`agm.methods.steering.relative_reward`;
* :class:`InverseRLSampler`  the learned sampler of :mod:`agm.methods.steering.learn_to_sample`.

:func:`fit` runs one of them without a run folder (the library API and the experiments); the run-folder
commands (``agm steering ...``) use the same methods through :mod:`agm.methods.steering.run`.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor, nn

from agm.training.config import TrainConfig


def train_config(**kw: Any) -> TrainConfig:
    """A TrainConfig for an in-memory CPU fit: no files, no progress bar, one log line per step."""
    base = dict(device="cpu", tensorboard=False, progress=False, log_every=1, ckpt_every=10**9, grad_clip=0.0, ema_decay=0.0)
    base.update(kw)
    return TrainConfig(**base)


def fit(method: Any, data: Tensor | Callable, cfg: TrainConfig, *, seed: int = 0, lrs: dict[str, float] | None = None,
        callback: Callable[[int, dict], None] | None = None):
    """Train ``method`` with the shared Trainer (no run folder); returns (trainer, logged records)."""
    from agm.training.trainer import Trainer

    trainer = Trainer(method, data, cfg, out_dir=None, seed=seed, lrs=lrs)
    records = trainer.fit(callback=callback)
    return trainer, records


def _dummy_batches(batch_size: int) -> Callable[[int, torch.Generator], Tensor]:
    """Trainer data for methods that draw their own samples (rollouts): a (B,) tensor whose length is the batch."""
    return lambda step, generator: torch.zeros(batch_size)


class FlowMatching:
    """min E_{t, x0 ~ N(0, I), x1 ~ data} |v(x_t, t) - (x1 - x0)|^2 on x_t = t x1 + (1 - t) x0 (linear FM;
    Lipman et al., arXiv 2210.02747), with the core's bridge-matching loss (sigma = 0)."""

    def __init__(self, net: nn.Module) -> None:
        from agm.paths import BrownianBridge

        self.net = net
        self.path = BrownianBridge(sigma=0.0)
        self.ema_names = ("velocity",)

    def networks(self) -> dict[str, nn.Module]:
        return {"velocity": self.net}

    def loss(self, batch: Tensor, step: int, generator: torch.Generator) -> tuple[Tensor, dict]:
        from agm.objectives import bridge_matching_loss

        x0 = torch.randn(batch.shape, generator=generator, device=batch.device, dtype=batch.dtype)
        per, _ = bridge_matching_loss(self.net, self.path, x0, batch, generator=generator)
        loss = per.mean()
        return loss, {"loss": loss.detach()}


class SOCFineTuning:
    """One loss of the SOC family (``SOCProblem.loss``) on the fine-tuned velocity ``problem.ft``; the batch is a
    dummy (B,) tensor (the loss draws its own on-policy rollouts from the trainer's generator). No EMA: the
    fine-tuned network itself is sampled (as in arXiv 2409.08861)."""

    ema_names: tuple[str, ...] = ()

    def __init__(self, problem: Any, loss_name: str) -> None:
        from agm.errors import check_choice
        from agm.methods.steering.soc import SOC_LOSSES

        check_choice("soc.loss", loss_name, SOC_LOSSES)
        self.problem, self.loss_name = problem, loss_name

    def networks(self) -> dict[str, nn.Module]:
        return {"ft": self.problem.ft}

    def loss(self, batch: Tensor, step: int, generator: torch.Generator) -> tuple[Tensor, dict]:
        per, info = self.problem.loss(self.loss_name, batch.shape[0], generator=generator)
        loss = per.mean()
        return loss, {"loss": loss.detach(), **info}


class RewardRegression:
    """The relative-reward regression (Nuti et al., arXiv 2306.01804) on x_t = t x1 + (1 - t) x0, x1 = the batch,
    t ~ U[t_min, t_max]."""

    ema_names: tuple[str, ...] = ()

    def __init__(self, reward_net: nn.Module, loss_fn: Any, t_min: float = 0.02, t_max: float = 0.98) -> None:
        self.reward_net, self.loss_fn, self.t_min, self.t_max = reward_net, loss_fn, t_min, t_max

    def networks(self) -> dict[str, nn.Module]:
        return {"reward": self.reward_net}

    def loss(self, batch: Tensor, step: int, generator: torch.Generator) -> tuple[Tensor, dict]:
        x0 = torch.randn(batch.shape, generator=generator)
        t = self.t_min + (self.t_max - self.t_min) * torch.rand(batch.shape[0], generator=generator)
        xt = t[:, None] * batch + (1 - t[:, None]) * x0
        loss = self.loss_fn(self.reward_net, xt, t).mean()
        return loss, {"loss": loss.detach()}


class InverseRLSampler:
    """Policy-gradient inverse RL for a sampler policy (Bourdrez et al., arXiv 2602.08689), as Trainer steps.

    One iteration = ``disc_steps`` discriminator steps then one policy step, all on the same rollout: step s
    belongs to iteration i = s // (disc_steps + 1). The rollout of iteration i is drawn from its own generator
    seeded by (seed, i), so every sub-step redraws the identical rollout (the policy does not change between
    them) and nothing but the networks and the optimiser has to be checkpointed (exact resume). The network
    that a step does not train gets no gradient, so AdamW leaves it alone.
    """

    ema_names: tuple[str, ...] = ()

    def __init__(self, mdp: Any, policy: nn.Module, disc: nn.Module, data: Tensor, cfg: Any) -> None:
        self.mdp, self.policy, self.disc, self.data, self.cfg = mdp, policy, disc, data, cfg
        n_lv = mdp.horizon
        self.omega = torch.ones(n_lv) if cfg.level_weights == "all" else torch.nn.functional.one_hot(torch.tensor(n_lv - 1), n_lv).float()

    def networks(self) -> dict[str, nn.Module]:
        return {"policy": self.policy, "disc": self.disc}

    def iteration(self, step: int) -> tuple[int, bool]:
        """(iteration index, whether this step is the policy step)."""
        period = self.cfg.disc_steps + 1
        return step // period, step % period == period - 1

    def rollout(self, it: int, *, grad: bool):
        g = torch.Generator().manual_seed(int(self.cfg.seed) * 1_000_003 + 7919 * it + 1)
        with torch.set_grad_enabled(grad):
            return self.mdp.rollout(self.policy, self.cfg.batch, generator=g)

    def loss(self, batch: Tensor, step: int, generator: torch.Generator) -> tuple[Tensor, dict]:
        from agm.methods.steering.learn_to_sample import c_f, discriminator_loss, expert_states

        it, policy_step = self.iteration(step)
        ro = self.rollout(it, grad=policy_step)
        n_lv, dim = self.mdp.horizon, self.mdp.dim
        xm = ro.xs[1:].reshape(-1, dim).detach()
        tm = ro.ts[1:].reshape(-1)
        if not policy_step:
            xe = expert_states(self.data, tm, generator=generator)
            dl = discriminator_loss(self.disc, xe, tm, xm, tm)
            return dl, {"loss": dl.detach(), "disc_loss": dl.detach()}
        cfg = self.cfg
        with torch.no_grad():
            d = self.disc(xm, tm).reshape(n_lv, cfg.batch)
            rew = -self.omega[:, None] * c_f(d.exp(), cfg.divergence, cfg.pr_lambda)  # R_k for states k = 1..N
            G = rew.flip(0).cumsum(0).flip(0)  # reward-to-go of action j
            adv = G - G.mean(1, keepdim=True)
            if cfg.normalise_advantage:
                adv = adv / (adv.std(1, keepdim=True) + 1e-6)
        loss = -(ro.logp * adv).sum(0).mean() - cfg.entropy_coef * ro.entropy.sum(0).mean()
        return loss, {"loss": loss.detach(), "mean_return": rew.sum(0).mean(), "final_logit": d[-1].mean()}
