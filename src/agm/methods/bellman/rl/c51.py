"""C51, our own implementation: the categorical distributional RL baseline of Bellman Diffusion's sec. 5.

Bellemare, Dabney & Munos (2017), "A Distributional Perspective on Reinforcement Learning",
Algorithm 1. Support z_j = V_min + j dz, j = 0..N-1, dz = (V_max - V_min)/(N - 1). For a transition
(s, a, r, s', done) and a* = argmax_a' sum_j z_j p_j(s', a') (target network):

    Tz_j = clip(r + gamma (1 - done) z_j, V_min, V_max),  b_j = (Tz_j - V_min) / dz,  l = floor(b_j), u = ceil(b_j)
    m_l += p_j(s', a*) (u - b_j),   m_u += p_j(s', a*) (b_j - l)    (when l = u the whole mass goes to l)

loss = cross-entropy  - sum_i m_i log p_i(s, a).

CleanRL's c51.py (v1.2.0) differs from this file in two places, both config options here: Adam's epsilon is
0.01 / batch_size (``adam_eps=None``, the default, does the same; this file used 0.01 / 32 before, which at
batch 128 is 4x CleanRL's), and its loss is - sum_i m_i log clamp(p_i, 1e-5, 1 - 1e-5) (``loss='clamped_log'``;
the clamp zeroes the gradient of atoms with p_i < 1e-5) where ours is the log-softmax (``loss='log_softmax'``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from agm.errors import ConfigError, check_choice, check_positive
from agm.methods.bellman.rl.envs import check_returns


def mlp_trunk(in_dim: int, hidden: tuple[int, ...], out_dim: int) -> nn.Sequential:
    """in_dim -> hidden[0] -> ... -> out_dim with ReLU (CleanRL's C51 trunk is (120, 84))."""
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, h), nn.ReLU()]
        d = h
    layers.append(nn.Linear(d, out_dim))
    return nn.Sequential(*layers)


def categorical_projection(next_pmf: Tensor, rewards: Tensor, dones: Tensor, gamma: float, support: Tensor) -> Tensor:
    """Project r + gamma (1 - done) Z' onto the fixed support (Bellemare et al. 2017, Alg. 1).

    next_pmf: (B, N) probabilities of Z' on ``support`` (N,); rewards, dones: (B,). Returns (B, N).
    """
    check_returns(rewards.detach().cpu().numpy(), "rewards")
    v_min, v_max = float(support[0]), float(support[-1])
    n = support.numel()
    dz = (v_max - v_min) / (n - 1)
    tz = (rewards[:, None] + gamma * (1.0 - dones[:, None]) * support[None, :]).clamp(v_min, v_max)
    b = (tz - v_min) / dz
    lo, hi = b.floor().long(), b.ceil().long()
    # numerical safety: b can exceed n - 1 by rounding
    lo, hi = lo.clamp(0, n - 1), hi.clamp(0, n - 1)
    w_lo = next_pmf * (hi.to(b.dtype) - b + (lo == hi).to(b.dtype))
    w_hi = next_pmf * (b - lo.to(b.dtype))
    out = torch.zeros_like(next_pmf)
    out.scatter_add_(1, lo, w_lo)
    out.scatter_add_(1, hi, w_hi)
    return out


C51_LOSSES = ("log_softmax", "clamped_log")


@dataclass
class C51Config:
    """C51 settings (CleanRL names): atoms, value range, discount, learning rate, trunk widths."""

    n_atoms: int = 101
    v_min: float = -10.0
    v_max: float = 110.0
    gamma: float = 0.99
    lr: float = 5e-4
    hidden: tuple[int, ...] = (120, 84)
    adam_eps: float | None = None  # None: 0.01 / batch_size (CleanRL's)
    loss: str = "log_softmax"  # log_softmax | clamped_log (CleanRL's)

    def __post_init__(self) -> None:
        if self.adam_eps is not None:
            check_positive("c51.adam_eps", self.adam_eps)
        check_choice("c51.loss", self.loss, C51_LOSSES)
        check_positive("c51.n_atoms", self.n_atoms, integer=True)
        if self.n_atoms < 2:
            raise ConfigError(f"c51.n_atoms={self.n_atoms!r} is not accepted; it must be >= 2")
        if not self.v_max > self.v_min:
            raise ConfigError(f"c51.v_max={self.v_max!r} must be > c51.v_min={self.v_min!r}")
        if not 0.0 < self.gamma <= 1.0:
            raise ConfigError(f"c51.gamma={self.gamma!r} is not accepted; it must lie in (0, 1]")
        check_positive("c51.lr", self.lr)


class C51Agent:
    """C51 agent: online and target categorical networks over |A| x N atoms."""

    def __init__(self, obs_dim: int, n_actions: int, cfg: C51Config, batch_size: int = 128) -> None:
        """``batch_size`` (the loop's) sets Adam's epsilon 0.01 / batch_size unless ``cfg.adam_eps`` is given."""
        self.cfg, self.n_actions = cfg, n_actions
        self.support = torch.linspace(cfg.v_min, cfg.v_max, cfg.n_atoms)
        self.net = mlp_trunk(obs_dim, cfg.hidden, n_actions * cfg.n_atoms)
        self.target = mlp_trunk(obs_dim, cfg.hidden, n_actions * cfg.n_atoms)
        self.target.load_state_dict(self.net.state_dict())
        self.adam_eps = cfg.adam_eps if cfg.adam_eps is not None else 0.01 / batch_size
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, eps=self.adam_eps)

    def pmf(self, obs: Tensor, target: bool = False) -> Tensor:
        """Return-distribution probabilities, shape (B, |A|, N)."""
        logits = (self.target if target else self.net)(obs).view(-1, self.n_actions, self.cfg.n_atoms)
        return torch.softmax(logits, dim=-1)

    def q_values(self, obs: Tensor, target: bool = False) -> Tensor:
        """Q(s, a) = sum_j z_j p_j(s, a), shape (B, |A|)."""
        return (self.pmf(obs, target) * self.support).sum(-1)

    @torch.no_grad()
    def act(self, obs: Tensor) -> int:
        """Greedy action for one observation (1-D tensor)."""
        return int(self.q_values(obs[None]).argmax(-1))

    def update(self, batch: dict[str, Tensor]) -> float:
        """One cross-entropy step towards the projected target distribution; returns the loss."""
        with torch.no_grad():
            next_pmf = self.pmf(batch["next_obs"], target=True)
            a_star = (next_pmf * self.support).sum(-1).argmax(-1)
            next_pmf = next_pmf[torch.arange(len(a_star)), a_star]
            m = categorical_projection(next_pmf, batch["rewards"], batch["terminated"], self.cfg.gamma, self.support)
        logits = self.net(batch["obs"]).view(-1, self.n_actions, self.cfg.n_atoms)
        taken = logits[torch.arange(len(a_star)), batch["actions"]]
        if self.cfg.loss == "clamped_log":
            logp = torch.softmax(taken, dim=-1).clamp(1e-5, 1 - 1e-5).log()
        else:
            logp = torch.log_softmax(taken, dim=-1)
        loss = -(m * logp).sum(-1).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.item()

    def sync_target(self) -> None:
        """Hard copy online -> target."""
        self.target.load_state_dict(self.net.state_dict())

    @torch.no_grad()
    def return_density(self, obs: Tensor, action: int) -> tuple[Tensor, Tensor]:
        """(support, pmf / dz) for plotting a return distribution as a density."""
        dz = (self.cfg.v_max - self.cfg.v_min) / (self.cfg.n_atoms - 1)
        return self.support, self.pmf(obs[None])[0, action] / dz
