"""Offline-RL baselines for QIPO: IQL and TD3+BC, in a few readable lines each (CleanRL / CORL style).

Both train through the one :class:`agm.training.Trainer` (networks(), ema_names, loss(batch, step, generator)), on
the same :class:`agm.data.offline.OfflineDataset`, with the same state normalisation, action scaling to [-1, 1]
and network widths as QIPO (agm.methods.efm.qipo), so that a comparison differs only in the method.
The Polyak target networks are the Trainer's EMA copies (decay = 1 - tau). docs/efm_qipo.md gives the settings.

* IQL (Kostrikov, Nair, Levine, "Offline RL with Implicit Q-Learning", ICLR 2022, arXiv 2110.06169), eqs. 5-7:
    L_V   = E[ L_2^tau( Q'(s, a) - V(s) ) ],      L_2^tau(u) = |tau - 1(u < 0)| u^2     (expectile regression)
    L_Q   = E[ (r + gamma (1 - d) V(s') - Q_k(s, a))^2 ]  for both heads k
    L_pi  = -E[ min(exp(beta_awr (Q'(s, a) - V(s))), 100) log pi(a | s) ]              (advantage-weighted regression)
  Q' = min over the target twin heads; pi = Gaussian with a tanh mean and a state-independent log-std; act = its mean.
* TD3+BC (Fujimoto & Gu, "A Minimalist Approach to Offline RL", NeurIPS 2021, arXiv 2106.06860), eq. 3:
    pi = argmax E[ lambda Q_1(s, pi(s)) - (pi(s) - a)^2 ],   lambda = alpha / mean|Q_1(s, pi(s))|  (no gradient)
  with TD3's critic (clipped double Q, target policy smoothing noise 0.2 clipped at 0.5) and a delayed actor
  update every ``policy_freq`` steps; states are normalised by the data set's mean and std. alpha = 0 and no BC
  term is plain TD3 (used to train behaviour policies online, experiments/efm/qipo_data.py).

One difference from the reference codes, forced by the single Trainer: the target networks are EMAs updated at
every step (the references update the actor target only on actor steps); with tau = 0.005 this changes the
target's lag by a factor < 2 and nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from agm.data.offline import OfflineDataset
from agm.errors import ConfigError, DataError, check_positive
from agm.methods.efm.policy import ActionScaler, Normalizer
from agm.methods.efm.qlearning import TwinQ
from agm.nets import MLP


def expectile_loss(diff: Tensor, tau: float) -> Tensor:
    """L_2^tau(u) = |tau - 1(u < 0)| u^2, elementwise (IQL eq. 5); its minimiser over a constant V of
    E[L(X - V)] is the tau-expectile of X (tau = 0.5: the mean)."""
    return torch.abs(tau - (diff < 0).float()) * diff.pow(2)


def td3bc_actor_loss(q_pi: Tensor, pi: Tensor, actions: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """TD3+BC eq. 3: -lambda mean Q(s, pi(s)) + mean (pi(s) - a)^2, lambda = alpha / mean|Q| (no gradient).
    Returns (loss, lambda)."""
    lam = alpha / q_pi.abs().mean().detach().clamp_min(1e-6)
    return -lam * q_pi.mean() + (pi - actions).pow(2).mean(), lam


class Actor(nn.Module):
    """Deterministic actor a = tanh(MLP(norm(s))) in [-1, 1] (normalised actions)."""

    def __init__(self, obs_dim: int, act_dim: int, obs_norm: Normalizer, hidden: int, depth: int) -> None:
        super().__init__()
        self.obs_norm = obs_norm
        self.net = MLP(obs_dim, act_dim, hidden=hidden, depth=depth, act="relu")

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.net(self.obs_norm(obs)))


class GaussianActor(Actor):
    """pi(a | s) = N(tanh(MLP(norm(s))), diag(exp(2 log_std))) with a state-independent log-std (CORL's IQL)."""

    def __init__(self, obs_dim: int, act_dim: int, obs_norm: Normalizer, hidden: int, depth: int) -> None:
        super().__init__(obs_dim, act_dim, obs_norm, hidden, depth)
        self.log_std = nn.Parameter(torch.zeros(act_dim))

    def log_prob(self, obs: Tensor, actions: Tensor) -> Tensor:
        dist = torch.distributions.Normal(self(obs), self.log_std.clamp(-5.0, 2.0).exp())
        return dist.log_prob(actions).sum(-1)


class ValueNet(nn.Module):
    def __init__(self, obs_dim: int, obs_norm: Normalizer, hidden: int, depth: int) -> None:
        super().__init__()
        self.obs_norm = obs_norm
        self.net = MLP(obs_dim, 1, hidden=hidden, depth=depth, act="relu")

    def forward(self, obs: Tensor) -> Tensor:
        return self.net(self.obs_norm(obs))[:, 0]


@dataclass
class BaselineConfig:
    """Settings shared by IQL and TD3+BC (defaults: the papers' locomotion values; widths as QIPO's)."""

    hidden: int = 256
    depth: int = 2
    gamma: float = 0.99
    reward_scale: float = 0.1  # as QIPO's Q-learning
    # IQL
    expectile: float = 0.7
    awr_beta: float = 3.0
    awr_max_weight: float = 100.0
    # TD3+BC
    alpha: float = 2.5
    bc: bool = True  # False: plain TD3 (online behaviour training)
    policy_noise: float = 0.2
    noise_clip: float = 0.5
    policy_freq: int = 2

    def validate(self) -> "BaselineConfig":
        for name in ("hidden", "depth", "policy_freq"):
            check_positive(name, getattr(self, name), integer=True)
        if not 0.0 < self.expectile < 1.0:
            raise ConfigError(f"expectile={self.expectile!r} must be in (0, 1)")
        if not 0.0 <= self.gamma < 1.0:
            raise ConfigError(f"gamma={self.gamma!r} must satisfy 0 <= gamma < 1")
        for name in ("awr_beta", "alpha", "policy_noise", "noise_clip"):
            check_positive(name, getattr(self, name), allow_zero=True)
        check_positive("reward_scale", self.reward_scale)
        return self


class _OfflineBase:
    """Data handling shared by the baselines: normalised actions, state normaliser, a batch function."""

    def __init__(self, dataset: OfflineDataset, config: BaselineConfig, action_low, action_high, seed: int) -> None:
        self.data, self.cfg, self.seed = dataset, config.validate(), seed
        torch.manual_seed(seed)
        self.scaler = ActionScaler(torch.as_tensor(action_low), torch.as_tensor(action_high))
        if tuple(self.scaler.low.shape) != (dataset.act_dim,):
            raise DataError(f"action bounds have shape {tuple(self.scaler.low.shape)}; accepted: ({dataset.act_dim},)")
        self.obs_norm = Normalizer.fit(dataset.observations)
        self.actions = self.scaler.normalize(dataset.actions).clamp(-1, 1)
        self.batch_size = 256

    def batch(self, step: int, generator: torch.Generator) -> dict:
        d = self.data
        idx = torch.randint(0, len(d), (self.batch_size,), generator=generator)
        return {"obs": d.observations[idx], "act": self.actions[idx], "rew": self.cfg.reward_scale * d.rewards[idx],
                "next_obs": d.next_observations[idx], "done": d.terminals[idx].float()}

    def _policy(self, obs: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def act(self, obs: np.ndarray | Tensor) -> np.ndarray:
        """Environment actions (deterministic) for a batch of observations."""
        o = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        if o.dim() == 1:
            o = o[None]
        return self.scaler.unnormalize(self._policy(o)).numpy()


class IQL(_OfflineBase):
    """Implicit Q-learning (module docstring); networks q (twin), v, actor; the Q target is the Trainer's EMA of q."""

    ema_names = ("q",)

    def __init__(self, dataset: OfflineDataset, config: BaselineConfig, action_low, action_high, *, seed: int = 0) -> None:
        super().__init__(dataset, config, action_low, action_high, seed)
        c, o, a = self.cfg, dataset.obs_dim, dataset.act_dim
        self.q = TwinQ(o, a, self.obs_norm, hidden=c.hidden, depth=c.depth)
        self.v = ValueNet(o, self.obs_norm, c.hidden, c.depth)
        self.actor = GaussianActor(o, a, self.obs_norm, c.hidden, c.depth)
        self.q_target: TwinQ | None = None

    def networks(self) -> dict[str, nn.Module]:
        return {"q": self.q, "v": self.v, "actor": self.actor}

    def bind(self, trainer) -> None:
        self.q_target = trainer.ema["q"].model

    def loss(self, b: dict, step: int, generator: torch.Generator) -> tuple[Tensor, dict]:
        c = self.cfg
        with torch.no_grad():
            q_t = self.q_target.min_q(b["obs"], b["act"])
            target = b["rew"] + c.gamma * (1.0 - b["done"]) * self.v(b["next_obs"])
        v = self.v(b["obs"])
        v_loss = expectile_loss(q_t - v, c.expectile).mean()
        q_loss = (self.q(b["obs"], b["act"]) - target[:, None]).pow(2).mean()
        w = torch.exp(c.awr_beta * (q_t - v.detach())).clamp(max=c.awr_max_weight)
        pi_loss = -(w * self.actor.log_prob(b["obs"], b["act"])).mean()
        loss = v_loss + q_loss + pi_loss  # independent terms: each network gets only its own gradient
        return loss, {"loss": loss.detach(), "v_loss": v_loss.detach(), "q_loss": q_loss.detach(), "pi_loss": pi_loss.detach()}

    def _policy(self, obs: Tensor) -> Tensor:
        return self.actor(obs)


class TD3BC(_OfflineBase):
    """TD3+BC (module docstring); networks actor, critic (twin); targets = the Trainer's EMAs of both."""

    ema_names = ("actor", "critic")

    def __init__(self, dataset: OfflineDataset, config: BaselineConfig, action_low, action_high, *, seed: int = 0) -> None:
        super().__init__(dataset, config, action_low, action_high, seed)
        c, o, a = self.cfg, dataset.obs_dim, dataset.act_dim
        self.actor = Actor(o, a, self.obs_norm, c.hidden, c.depth)
        self.critic = TwinQ(o, a, self.obs_norm, hidden=c.hidden, depth=c.depth)
        self.actor_target: Actor | None = None
        self.critic_target: TwinQ | None = None

    def networks(self) -> dict[str, nn.Module]:
        return {"actor": self.actor, "critic": self.critic}

    def bind(self, trainer) -> None:
        self.actor_target, self.critic_target = trainer.ema["actor"].model, trainer.ema["critic"].model

    def loss(self, b: dict, step: int, generator: torch.Generator) -> tuple[Tensor, dict]:
        c = self.cfg
        with torch.no_grad():
            noise = (c.policy_noise * torch.randn(b["act"].shape, generator=generator)).clamp(-c.noise_clip, c.noise_clip)
            next_a = (self.actor_target(b["next_obs"]) + noise).clamp(-1, 1)
            target = b["rew"] + c.gamma * (1.0 - b["done"]) * self.critic_target.min_q(b["next_obs"], next_a)
        critic_loss = (self.critic(b["obs"], b["act"]) - target[:, None]).pow(2).mean()
        logs = {"critic_loss": critic_loss.detach()}
        loss = critic_loss
        if step % c.policy_freq == 0:  # delayed actor update; the critic's parameters get no gradient from it
            pi = self.actor(b["obs"])
            frozen = {k: v.detach() for k, v in self.critic.named_parameters()} | dict(self.critic.named_buffers())
            q_pi = torch.func.functional_call(self.critic, frozen, (b["obs"], pi))[:, 0]
            if c.bc:
                actor_loss, lam = td3bc_actor_loss(q_pi, pi, b["act"], c.alpha)
                logs["lambda"] = lam
            else:
                actor_loss = -q_pi.mean()
            logs["actor_loss"] = actor_loss.detach()
            loss = loss + actor_loss
        logs["loss"] = loss.detach()
        return loss, logs

    def _policy(self, obs: Tensor) -> Tensor:
        return self.actor(obs)


def make_baseline(name: str, dataset: OfflineDataset, config: BaselineConfig, action_low, action_high, *, seed: int = 0):
    """'iql' or 'td3bc'."""
    if name == "iql":
        return IQL(dataset, config, action_low, action_high, seed=seed)
    if name == "td3bc":
        return TD3BC(dataset, config, action_low, action_high, seed=seed)
    raise ConfigError(f"baseline={name!r}; accepted: 'iql', 'td3bc'")


def make_baseline_trainer(algo: IQL | TD3BC, *, steps: int, lr: float = 3e-4, batch_size: int = 256, tau: float = 0.005,
                          out_dir=None):
    """The one Trainer for a baseline: Adam (AdamW, weight decay 0) at ``lr`` for every network, no clipping, the
    target networks = its EMAs with decay 1 - tau."""
    from agm.training import Trainer
    from agm.training.config import TrainConfig

    check_positive("steps", steps, integer=True)
    if not 0.0 < tau <= 1.0:
        raise ConfigError(f"tau={tau!r} must be in (0, 1]")
    algo.batch_size = batch_size
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, grad_clip=0.0, ema_decay=1.0 - tau, log_every=max(1, min(1000, steps)),
                      ckpt_every=max(steps, 1), tensorboard=False, progress=False, device="cpu")
    trainer = Trainer(algo, algo.batch, cfg, out_dir=out_dir, seed=algo.seed)
    algo.bind(trainer)
    return trainer


__all__ = ["BaselineConfig", "IQL", "TD3BC", "expectile_loss", "td3bc_actor_loss", "make_baseline", "make_baseline_trainer",
           "Actor", "GaussianActor", "ValueNet"]
