"""Twin Q-network and in-support softmax Q-learning (QGPO / QIPO; digest A.6).

Target (QGPO's official code, used by QIPO per summaries; digest A.6):

    y = r + gamma (1 - d) sum_j softmax_j(beta_Q Q'(s', a'_j)) Q'(s', a'_j),   a'_j ~ mu(. | s'), j = 1..M,

Q' = Polyak target network (min over its two heads), loss = mean over both heads of (Q_k(s, a) - y)^2.
beta_Q -> infinity gives the in-support max, beta_Q = 0 the behaviour value (SARSA-like expectation).
"""
from __future__ import annotations

import copy

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


class SoftmaxQLearner:
    """In-support softmax Q-learning with a Polyak target (module docstring)."""

    def __init__(self, q: TwinQ, *, gamma: float = 0.99, tau: float = 0.005, beta_q: float = 1.0, lr: float = 3e-4) -> None:
        if not (0.0 <= gamma < 1.0):
            raise ConfigError(f"gamma={gamma!r} is not accepted; it must satisfy 0 <= gamma < 1")
        if not (0.0 < tau <= 1.0):
            raise ConfigError(f"tau={tau!r} is not accepted; it must satisfy 0 < tau <= 1")
        check_positive("beta_q", beta_q, allow_zero=True)
        check_positive("q_lr", lr)
        self.q, self.q_target = q, copy.deepcopy(q).requires_grad_(False)
        self.gamma, self.tau, self.beta_q = gamma, tau, float(beta_q)
        self.opt = torch.optim.Adam(q.parameters(), lr=lr)

    def target(self, rewards: Tensor, next_obs: Tensor, terminals: Tensor, next_support: Tensor) -> Tensor:
        """y = r + gamma (1 - d) sum_j softmax_j(beta_Q Q'(s', a'_j)) Q'(s', a'_j)   (B,)."""
        qn = self.q_target.q_support(next_obs, next_support)
        v = (torch.softmax(self.beta_q * qn, dim=1) * qn).sum(1)
        return rewards + self.gamma * (1.0 - terminals.float()) * v

    def step(self, obs: Tensor, act: Tensor, rewards: Tensor, next_obs: Tensor, terminals: Tensor, next_support: Tensor) -> float:
        """One gradient step on mean_k (Q_k(s, a) - y)^2 and a Polyak update; returns the loss."""
        y = self.target(rewards, next_obs, terminals, next_support)
        loss = (self.q(obs, act) - y[:, None]).pow(2).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        with torch.no_grad():
            for p, pt in zip(self.q.parameters(), self.q_target.parameters()):
                pt.lerp_(p, self.tau)
        return float(loss.detach())
