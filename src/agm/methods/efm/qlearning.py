"""Twin Q-network and in-support softmax Q-learning (QGPO / QIPO; arXiv 2503.04975 section 5, Algorithm 2).

Target (QGPO's official code, used by QIPO):

    y = r + gamma (1 - d) sum_j softmax_j(beta_Q Q'(s', a'_j)) Q'(s', a'_j),   a'_j ~ mu(. | s'), j = 1..M,

Q' = Polyak target network (min over its two heads), loss = mean over both heads of (Q_k(s, a) - y)^2.
beta_Q -> infinity gives the in-support max, beta_Q = 0 the behaviour value (SARSA-like expectation).
The gradient steps go through the shared :class:`agm.training.Trainer`; the Polyak target network is the
Trainer's EMA of Q with decay 1 - tau (EMA: target <- target + (1 - decay) (Q - target)).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from agm.errors import ConfigError, check_positive
from agm.nets import MLP
from agm.methods.efm.policy import Normalizer


class TwinQ(nn.Module):
    """Two MLP heads Q_k([norm(s), a]) (hidden x depth, ReLU as in QGPO); ``forward`` returns (B, 2)."""

    def __init__(self, obs_dim: int, act_dim: int, obs_norm: Normalizer, hidden: int = 256, depth: int = 3) -> None:
        super().__init__()
        self.obs_norm = obs_norm
        self.q1 = MLP(obs_dim + act_dim, 1, hidden=hidden, depth=depth, act="relu")
        self.q2 = MLP(obs_dim + act_dim, 1, hidden=hidden, depth=depth, act="relu")

    def forward(self, obs: Tensor, act: Tensor) -> Tensor:
        x = torch.cat([self.obs_norm(obs), act], dim=-1)
        return torch.cat([self.q1(x), self.q2(x)], dim=-1)

    def min_q(self, obs: Tensor, act: Tensor) -> Tensor:
        """min_k Q_k(s, a), shape (B,)."""
        return self(obs, act).min(dim=-1).values

    def q_support(self, obs: Tensor, support: Tensor, chunk: int = 65536) -> Tensor:
        """min-head Q(s_i, a_ij) for obs (B, obs_dim) and support actions (B, M, act_dim) -> (B, M), no grad."""
        B, M, A = support.shape
        o = obs[:, None, :].expand(B, M, obs.shape[-1]).reshape(B * M, -1)
        a = support.reshape(B * M, A)
        with torch.no_grad():
            out = torch.cat([self.min_q(o[i : i + chunk], a[i : i + chunk]) for i in range(0, B * M, chunk)])
        return out.reshape(B, M)


def check_q_options(gamma: float, beta_q: float) -> None:
    if not (0.0 <= gamma < 1.0):
        raise ConfigError(f"gamma={gamma!r} is not accepted; it must satisfy 0 <= gamma < 1")
    check_positive("beta_q", beta_q, allow_zero=True)


def softmax_q_target(q_target: TwinQ, rewards: Tensor, next_obs: Tensor, terminals: Tensor, next_support: Tensor,
                     gamma: float, beta_q: float) -> Tensor:
    """y = r + gamma (1 - d) sum_j softmax_j(beta_Q Q'(s', a'_j)) Q'(s', a'_j)   (B,), no gradient."""
    qn = q_target.q_support(next_obs, next_support)
    v = (torch.softmax(beta_q * qn, dim=1) * qn).sum(1)
    return rewards + gamma * (1.0 - terminals.float()) * v


def td_loss(q: TwinQ, q_target: TwinQ, batch: dict, gamma: float, beta_q: float) -> Tensor:
    """mean over both heads of (Q_k(s, a) - y)^2 for a batch dict (obs, act, rew, next_obs, term, next_support)."""
    y = softmax_q_target(q_target, batch["rew"], batch["next_obs"], batch["term"], batch["next_support"], gamma, beta_q)
    return (q(batch["obs"], batch["act"]) - y[:, None]).pow(2).mean()


class SoftmaxQLearner:
    """In-support softmax Q-learning as a Trainer method (networks {'q'}; its EMA is the target network).

    Train with ``Trainer(learner, batch_fn, TrainConfig(ema_decay=1 - tau, ...))`` after ``learner.bind(trainer)``;
    batches are dicts with keys obs, act, rew, next_obs, term, next_support (B, M, act_dim).
    """

    ema_names = ("q",)

    def __init__(self, q: TwinQ, *, gamma: float = 0.99, beta_q: float = 1.0) -> None:
        check_q_options(gamma, beta_q)
        self.q, self.gamma, self.beta_q = q, gamma, float(beta_q)
        self.q_target: TwinQ | None = None

    def bind(self, trainer) -> None:
        """Use the trainer's EMA copy of Q as the Polyak target network."""
        self.q_target = trainer.ema["q"].model

    def networks(self) -> dict[str, nn.Module]:
        return {"q": self.q}

    def target(self, rewards: Tensor, next_obs: Tensor, terminals: Tensor, next_support: Tensor) -> Tensor:
        return softmax_q_target(self.q_target, rewards, next_obs, terminals, next_support, self.gamma, self.beta_q)

    def loss(self, batch: dict, step: int, generator: torch.Generator) -> tuple[Tensor, dict]:
        if self.q_target is None:
            raise ConfigError("SoftmaxQLearner has no target network: call learner.bind(trainer) first")
        loss = td_loss(self.q, self.q_target, batch, self.gamma, self.beta_q)
        return loss, {"loss": loss.detach()}
