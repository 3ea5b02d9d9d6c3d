"""QIPO: Q-weighted iterative policy optimisation with a flow-matching policy (QIPO-OT).

EFM paper (Zhang et al., ICLR 2025) section 5, eq. 5.2 (loss), eq. 5.4 (iteration), Algorithm 2;
digest efm-qipo-rewards-irl-digest.md A.6 and A.9.

KL-regularised improvement max_pi E_pi[Q] - KL(pi || mu) / beta has pi* ∝ mu exp(beta Q), i.e. EFM with energy
E(s, a) = -Q(s, a). Per state s_i with dataset action a_i0 and M support actions a_i1..a_iM drawn from the current
policy, the weights are g_ij = softmax_j(beta Q(s_i, a_ij)) (per-state normalisation, digest A.9.1) and the loss is

    L(theta) = mean_i sum_j g_ij || v_theta(a_t^ij, t_ij; s_i) - (a_ij - a0_ij) ||^2        (eq. 5.2, OT version)

Renewing the support set from the current policy every ``renew_every`` steps gives pi_{l+1} ∝ pi_l exp(beta Q),
hence pi_l ∝ mu exp(l beta Q) (eq. 5.4). Algorithm 2 (digest A.6): (1) behaviour warm-up: plain CFM on D
(pi_0 = mu); (2) Q warm-up with in-support softmax Q-learning, support actions from mu; (3) Q-weighted
iterative improvement; (4) act: one sample from the final policy (no guidance term).

Reconstructed choices (digest A.9; each is a QIPOConfig option, defaults first):
  * weight_all_actions: True = noise and weight all M+1 actions (summaries of Alg. 2) | False = only the
    dataset action, with weight (M+1) g_i0 (third-party JAX version);
  * include_dataset_action: True (paper) | False (support only; used by the O-A5 oracle);
  * freeze_q: True = Q fixed after warm-up (secondary readings) | False = keep training Q during step 3
    with support actions from the current policy;
  * weight_cap: None | c > 0 caps beta (Q - max_j Q) at -c before the softmax (degeneracy guard, A.9.5);
  * support_states: None = renew the support table for every state | n = for a random subset of n states,
    from which the phase's batches are drawn (a compute saving of ours);
  * best_of: 1 = single policy sample (the method) | N = best of N samples by Q (reported separately, A.9.6);
  * sampler_method: 'euler' | 'heun' for the policy's ODE (a 20-step Euler sampler shrinks a narrow action
    law's sd by ~10 % per fit, which compounds over renewals; Heun does not - measured, docs/efm_qipo.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from agm.errors import ConfigError, DataError, check_choice, check_positive
from agm.methods.efm.efm import check_beta, effective_sample_size, grouped_softmax
from agm.data.offline import OfflineDataset
from agm.methods.efm.policy import ActionScaler, FlowPolicy, Normalizer
from agm.methods.efm.qlearning import SoftmaxQLearner, TwinQ

QFn = Callable[[Tensor, Tensor], Tensor]


@dataclass
class QIPOConfig:
    """QIPO hyperparameters (digest A.6 / A.9.4 defaults: beta = 3, M = 16, beta_Q = 1, ~10 renewals)."""

    beta: float = 3.0
    support_size: int = 16
    beta_q: float = 1.0
    gamma: float = 0.99
    tau: float = 0.005
    reward_scale: float = 1.0
    behaviour_steps: int = 3000
    q_steps: int = 3000
    improve_steps: int = 3000
    renew_every: int = 300
    batch_size: int = 256
    improve_batch_size: int = 128
    policy_lr: float = 3e-4
    q_lr: float = 3e-4
    policy_hidden: int = 256
    policy_depth: int = 3
    q_hidden: int = 256
    q_depth: int = 3
    sampler_steps: int = 10
    sampler_method: str = "euler"
    weight_all_actions: bool = True
    include_dataset_action: bool = True
    freeze_q: bool = True
    weight_cap: float | None = None
    support_states: int | None = None
    q_support_size: int = 16
    best_of: int = 1

    def __post_init__(self) -> None:
        check_beta(self.beta, "beta")
        check_beta(self.beta_q, "beta_q")
        for name in ("support_size", "behaviour_steps", "renew_every", "batch_size", "improve_batch_size",
                     "policy_hidden", "policy_depth", "q_hidden", "q_depth", "sampler_steps", "q_support_size", "best_of"):
            check_positive(name, getattr(self, name), integer=True)
        for name in ("q_steps", "improve_steps"):
            check_positive(name, getattr(self, name), integer=True, allow_zero=True)
        check_positive("reward_scale", self.reward_scale)
        check_positive("policy_lr", self.policy_lr)
        check_choice("sampler_method", self.sampler_method, ("euler", "heun"))
        if self.weight_cap is not None:
            check_positive("weight_cap", self.weight_cap)
        if self.support_states is not None:
            check_positive("support_states", self.support_states, integer=True)


def qipo_policy_loss(
    policy: FlowPolicy,
    obs: Tensor,
    actions: Tensor,
    q_values: Tensor,
    beta: float,
    *,
    weight_all_actions: bool = True,
    weight_cap: float | None = None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """QIPO eq. 5.2 (OT form) for obs (B, obs_dim), normalised actions (B, K, act_dim), Q (B, K); column 0 is the
    dataset action when present. Returns (loss, weights g (B, K)).

    all actions:   L = mean_i sum_j g_ij l_ij,   g_ij = softmax_j(beta Q_ij)
    dataset only:  L = mean_i K g_i0 l_i0
    """
    beta = check_beta(beta)
    if actions.dim() != 3 or q_values.shape != actions.shape[:2] or obs.shape[0] != actions.shape[0]:
        raise DataError(
            f"shapes obs {tuple(obs.shape)}, actions {tuple(actions.shape)}, q_values {tuple(q_values.shape)}; "
            "accepted: (B, obs_dim), (B, K, act_dim), (B, K)"
        )
    B, K, A = actions.shape
    g = grouped_softmax(beta * q_values.detach(), cap=weight_cap)
    if weight_all_actions:
        per = policy.per_sample_loss(obs.repeat_interleave(K, 0), actions.reshape(B * K, A), generator=generator)
        return (g * per.reshape(B, K)).sum(1).mean(), g
    per = policy.per_sample_loss(obs, actions[:, 0], generator=generator)
    return (K * g[:, 0] * per).mean(), g


class QIPO:
    """QIPO Algorithm 2 with a flow-matching policy (module docstring). Actions inside are normalised to [-1, 1].

    Args:
        dataset: D4RL-style transitions.
        config: QIPOConfig.
        action_low, action_high: the environment's action bounds.
        seed: seeds parameter init and every sampling step.
        q_fn: optional fixed Q(s, a_normalised) -> (B,) used instead of a learned Q (tests / oracles).
    """

    def __init__(
        self,
        dataset: OfflineDataset,
        config: QIPOConfig,
        action_low,
        action_high,
        *,
        seed: int = 0,
        q_fn: QFn | None = None,
    ) -> None:
        self.data, self.cfg, self.seed = dataset, config, seed
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.scaler = ActionScaler(torch.as_tensor(action_low), torch.as_tensor(action_high))
        if tuple(self.scaler.low.shape) != (dataset.act_dim,):
            raise DataError(f"action bounds have shape {tuple(self.scaler.low.shape)}; accepted: ({dataset.act_dim},) to match the dataset actions")
        self.obs_norm = Normalizer.fit(dataset.observations)
        self.actions = self.scaler.normalize(dataset.actions).clamp(-1, 1)
        self.policy = FlowPolicy(dataset.obs_dim, dataset.act_dim, self.obs_norm, hidden=config.policy_hidden,
                                 depth=config.policy_depth, steps=config.sampler_steps, method=config.sampler_method)
        self.opt = torch.optim.Adam(self.policy.parameters(), lr=config.policy_lr)
        self.q: TwinQ | None = None
        self.learner: SoftmaxQLearner | None = None
        self.q_fn = q_fn
        self.support: Tensor | None = None
        self.support_idx: Tensor | None = None
        self.support_q: Tensor | None = None
        self.log: list[dict] = []

    # ----------------------------------------------------------------------------- step 1: behaviour
    def train_behaviour(self, steps: int | None = None, callback: Callable[[int], None] | None = None, every: int = 0) -> None:
        """Plain CFM on (s, a) ~ D (behaviour cloning = EFM with beta = 0): pi_0 = mu."""
        steps = self.cfg.behaviour_steps if steps is None else steps
        n = len(self.data)
        for k in range(1, steps + 1):
            idx = torch.randint(0, n, (self.cfg.batch_size,), generator=self.gen)
            loss = self.policy.per_sample_loss(self.data.observations[idx], self.actions[idx], generator=self.gen).mean()
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            if callback is not None and every and k % every == 0:
                callback(k)

    @torch.no_grad()
    def sample_support(self, obs: Tensor, m: int, chunk: int = 4096) -> Tensor:
        """m normalised actions per state from the current policy: (N, m, act_dim)."""
        return torch.cat([self.policy.sample(obs[i : i + chunk], m, generator=self.gen) for i in range(0, obs.shape[0], chunk)])

    # ------------------------------------------------------------------------------------ step 2: Q
    def q_value(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Q(s_i, a_ij) for normalised actions (B, K, act_dim) -> (B, K): q_fn if given, else the learned min-head Q."""
        if self.q_fn is not None:
            B, K, A = actions.shape
            with torch.no_grad():
                return self.q_fn(obs.repeat_interleave(K, 0), actions.reshape(B * K, A)).reshape(B, K)
        if self.q is None:
            raise ConfigError("no Q-function: call train_q() first or pass q_fn")
        return self.q.q_support(obs, actions)

    def train_q(self, steps: int | None = None) -> list[float]:
        """In-support softmax Q-learning (qlearning.py) with support actions for s' from the current policy (mu)."""
        steps = self.cfg.q_steps if steps is None else steps
        d, cfg = self.data, self.cfg
        if self.q is None:
            self.q = TwinQ(d.obs_dim, d.act_dim, self.obs_norm, hidden=cfg.q_hidden, depth=cfg.q_depth)
            self.learner = SoftmaxQLearner(self.q, gamma=cfg.gamma, tau=cfg.tau, beta_q=cfg.beta_q, lr=cfg.q_lr)
        next_support = self.sample_support(d.next_observations, cfg.q_support_size)
        losses = []
        for _ in range(steps):
            idx = torch.randint(0, len(d), (cfg.batch_size,), generator=self.gen)
            losses.append(self.learner.step(d.observations[idx], self.actions[idx], cfg.reward_scale * d.rewards[idx],
                                            d.next_observations[idx], d.terminals[idx], next_support[idx]))
        return losses

    # ---------------------------------------------------------------------------- step 3: improve
    def renew_support(self) -> None:
        """Replace the support table: M actions from the current policy for every state (or a random subset)."""
        n = len(self.data)
        if self.cfg.support_states is None or self.cfg.support_states >= n:
            idx = torch.arange(n)
        else:
            idx = torch.randperm(n, generator=self.gen)[: self.cfg.support_states]
        obs = self.data.observations[idx]
        sup = self.sample_support(obs, self.cfg.support_size)
        if self.cfg.include_dataset_action:
            sup = torch.cat([self.actions[idx][:, None, :], sup], dim=1)
        self.support_idx, self.support = idx, sup
        self.support_q = self.q_value(obs, sup)

    def improve(self, steps: int | None = None, callback: Callable[[int], None] | None = None, every: int = 0) -> None:
        """Q-weighted iterative policy improvement (Algorithm 2 step 3), renewing supports every ``renew_every`` steps."""
        cfg = self.cfg
        steps = cfg.improve_steps if steps is None else steps
        for k in range(steps):
            if k % cfg.renew_every == 0:
                self.renew_support()
            j = torch.randint(0, self.support_idx.shape[0], (cfg.improve_batch_size,), generator=self.gen)
            obs = self.data.observations[self.support_idx[j]]
            loss, g = qipo_policy_loss(self.policy, obs, self.support[j], self.support_q[j], cfg.beta,
                                       weight_all_actions=cfg.weight_all_actions, weight_cap=cfg.weight_cap, generator=self.gen)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            if not cfg.freeze_q and self.q is not None and self.q_fn is None:
                self.train_q(1)
            if k % 100 == 0:
                ess = float((1.0 / (g**2).sum(1)).mean())
                self.log.append({"step": k, "loss": float(loss.detach()), "per_state_ess": ess})
            if callback is not None and every and (k + 1) % every == 0:
                callback(k + 1)

    # -------------------------------------------------------------------------------- step 4: act
    @torch.no_grad()
    def act(self, obs: np.ndarray | Tensor, best_of: int | None = None) -> np.ndarray:
        """Environment actions for a batch of observations: one policy sample (best_of = 1, the method) or the
        best of N samples by Q (an option reported separately, digest A.9.6)."""
        n = self.cfg.best_of if best_of is None else best_of
        o = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        if o.dim() == 1:
            o = o[None]
        if o.shape[1] != self.data.obs_dim:
            raise DataError(f"observation has shape {tuple(o.shape)}; accepted: (B, {self.data.obs_dim})")
        a = self.policy.sample(o, n, generator=self.gen)
        if n > 1:
            best = self.q_value(o, a).argmax(1)
            a = a[torch.arange(o.shape[0]), best][:, None]
        return self.scaler.unnormalize(a[:, 0]).numpy()

    def config_dict(self) -> dict:
        return asdict(self.cfg)
