"""QIPO: Q-weighted iterative policy optimisation with a flow-matching policy (QIPO-OT).

Zhang et al., "Energy-Weighted Flow Matching for Offline Reinforcement Learning", ICLR 2025 (arXiv 2503.04975),
section 5: eq. 5.2 (loss), eq. 5.4 (iteration), Algorithm 2. Our notation and choices: docs/efm_qipo.md.

KL-regularised improvement max_pi E_pi[Q] - KL(pi || mu) / beta has pi* ∝ mu exp(beta Q), i.e. EFM with energy
E(s, a) = -Q(s, a). Per state s_i with dataset action a_i0 and M support actions a_i1..a_iM drawn from the current
policy, the weights are g_ij = softmax_j(beta Q(s_i, a_ij)) (per-state normalisation) and the loss is

    L(theta) = mean_i sum_j g_ij || v_theta(a_t^ij, t_ij; s_i) - (a_ij - a0_ij) ||^2        (eq. 5.2, OT version)

Renewing the support set from the current policy every ``renew_every`` steps gives pi_{l+1} ∝ pi_l exp(beta Q),
hence pi_l ∝ mu exp(l beta Q) (eq. 5.4). Algorithm 2: (1) behaviour warm-up: plain CFM on D
(pi_0 = mu); (2) Q warm-up with in-support softmax Q-learning, support actions from mu; (3) Q-weighted
iterative improvement; (4) act: one sample from the final policy (no guidance term).

One training loop: the three phases are consecutive step ranges of ONE :class:`agm.training.Trainer` run
([0, K1) behaviour, [K1, K1 + K2) Q, then K3 improvement steps); ``QIPO`` is the Trainer's method and its batch
function. Everything a resume needs is in the Trainer's checkpoint: policy and Q (networks), the Q target (the
Trainer's EMA of Q, decay 1 - tau), the optimiser, the generator, and the phase-3 support table (buffers of the
'tables' module). The Q phase's next-state support is re-drawn on resume from a generator seeded by the run's
seed (the policy does not change during that phase), so a killed run resumes bit-identically.

Choices the paper leaves open (each is a QIPOConfig option, defaults first):
  * weight_all_actions: True = noise and weight all M+1 actions (summaries of Alg. 2) | False = only the
    dataset action, with weight (M+1) g_i0 (third-party JAX version);
  * include_dataset_action: True (paper) | False (support only; used by the iterated-tilt bandit test);
  * freeze_q: False (the default of the tuned v2 setting; v1: True) = keep training Q during step 3: the next-state
    support actions for its target are drawn once per renewal from the current policy (for the renewal's states),
    and the Q values that weight the policy loss are recomputed from the current Q at every step (never stale) |
    True = Q fixed after warm-up (required with a fixed q_fn);
  * weight_cap: None | c > 0 caps beta (Q - max_j Q) at -c before the softmax (degeneracy guard);
  * support_states: None = renew the support table for every state | n = for a random subset of n states,
    from which the phase's batches are drawn (a compute saving of ours);
  * best_of: 1 = single policy sample (the method) | N = best of N samples by Q (reported separately);
  * sampler_method: 'euler' | 'heun' for the policy's ODE (a 20-step Euler sampler shrinks a narrow action
    law's sd by ~10 % per fit, which compounds over renewals; Heun does not - measured, docs/efm_qipo.md);
  * eval_sampler_steps / eval_sampler_method: the ODE sampler used when acting (default: the training one, which
    draws the support actions); more steps at evaluation cost nothing in training;
  * beta_schedule: 'constant' = beta at every renewal, so pi_l ∝ mu exp(l beta Q) (eq. 5.4) | 'linear' = beta (l + 1) / L
    at renewal l of L = ceil(K3 / K_renew), a gentler start with total tilt beta (L + 1) / 2;
  * q_norm: 'none' = softmax_j(beta Q_ij) (the paper) | 'std' = Q divided by the batch standard deviation of the
    per-state advantages Q_ij - mean_j Q_ij first, so beta is a temperature on standardised advantages (ours; the
    measured per-state ESS with 'none' stays near K on our tasks: the tilt is then too weak, docs/efm_qipo.md);
  * beta = 0: phase 3 is behaviour cloning (plain CFM on the data for K3 more steps), the BC baseline.
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from agm.errors import ConfigError, DataError, check_positive
from agm.methods.efm.config import QIPOConfig
from agm.methods.efm.efm import check_beta, effective_sample_size, grouped_softmax
from agm.data.offline import OfflineDataset
from agm.methods.efm.policy import ActionScaler, FlowPolicy, Normalizer
from agm.methods.efm.qlearning import TwinQ, td_loss
from agm.samplers import ODESampler

QFn = Callable[[Tensor, Tensor], Tensor]


def qipo_policy_loss(
    policy: FlowPolicy,
    obs: Tensor,
    actions: Tensor,
    q_values: Tensor,
    beta: float,
    *,
    weight_all_actions: bool = True,
    weight_cap: float | None = None,
    q_norm: str = "none",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """QIPO eq. 5.2 (OT form) for obs (B, obs_dim), normalised actions (B, K, act_dim), Q (B, K); column 0 is the
    dataset action when present. Returns (loss, weights g (B, K)).

    all actions:   L = mean_i sum_j g_ij l_ij,   g_ij = softmax_j(beta Q_ij)
    dataset only:  L = mean_i K g_i0 l_i0
    q_norm='std' (ours): Q_ij / s with s the batch standard deviation of Q_ij - mean_j Q_ij (the per-state advantages),
    so that beta acts on standardised advantages and does not depend on the reward scale.
    """
    beta = check_beta(beta)
    if actions.dim() != 3 or q_values.shape != actions.shape[:2] or obs.shape[0] != actions.shape[0]:
        raise DataError(
            f"shapes obs {tuple(obs.shape)}, actions {tuple(actions.shape)}, q_values {tuple(q_values.shape)}; "
            "accepted: (B, obs_dim), (B, K, act_dim), (B, K)"
        )
    B, K, A = actions.shape
    q = q_values.detach()
    if q_norm == "std":
        q = q / (q - q.mean(1, keepdim=True)).std().clamp_min(1e-6)
    elif q_norm != "none":
        raise ConfigError(f"q_norm={q_norm!r}; accepted: 'none', 'std'")
    g = grouped_softmax(beta * q, cap=weight_cap)
    if weight_all_actions:
        per = policy.per_sample_loss(obs.repeat_interleave(K, 0), actions.reshape(B * K, A), generator=generator)
        return (g * per.reshape(B, K)).sum(1).mean(), g
    per = policy.per_sample_loss(obs, actions[:, 0], generator=generator)
    return (K * g[:, 0] * per).mean(), g


class SupportTable(nn.Module):
    """Phase-3 support set as buffers (so that the Trainer's checkpoint holds it): for S states,
    ``support`` (S, K, act_dim) with column 0 the dataset action when included, ``support_idx`` (S,) their rows in
    the data set, ``support_q`` (S, K) their Q values (frozen Q only), ``next_support`` (S, M_Q, act_dim) for the
    Q target when Q keeps training (empty otherwise). No parameters."""

    def __init__(self, states: int, k: int, act_dim: int, q_support: int) -> None:
        super().__init__()
        self.register_buffer("support", torch.zeros(states, k, act_dim))
        self.register_buffer("support_idx", torch.zeros(states, dtype=torch.long))
        self.register_buffer("support_q", torch.zeros(states, k))
        self.register_buffer("next_support", torch.zeros(states if q_support else 0, q_support, act_dim))


class QIPO:
    """QIPO Algorithm 2 with a flow-matching policy, as a Trainer method (module docstring). Actions inside are
    normalised to [-1, 1].

    Args:
        dataset: D4RL-style transitions.
        config: QIPOConfig (the phase lengths, sizes and options).
        action_low, action_high: the environment's action bounds.
        seed: network initialisation and the act-time generator (default: config.seed).
        q_fn: optional fixed Q(s, a_normalised) -> (B,) used instead of a learned Q (tests / oracles; then no Q
            network is built, q_steps must be 0 and freeze_q True).

    Train with :func:`fit_qipo` (in memory) or ``agm qipo train`` (run folder, resumable); the Trainer calls
    ``batch(step, generator)`` and ``loss(batch, step, generator)``.
    """

    def __init__(self, dataset: OfflineDataset, config: QIPOConfig, action_low, action_high, *, seed: int | None = None,
                 q_fn: QFn | None = None) -> None:
        self.data, self.cfg = dataset, config.validate()
        self.seed = config.seed if seed is None else seed
        torch.manual_seed(self.seed)
        self.gen = torch.Generator().manual_seed(self.seed)
        self.scaler = ActionScaler(torch.as_tensor(action_low), torch.as_tensor(action_high))
        if tuple(self.scaler.low.shape) != (dataset.act_dim,):
            raise DataError(f"action bounds have shape {tuple(self.scaler.low.shape)}; accepted: ({dataset.act_dim},) to match the dataset actions")
        if q_fn is not None and config.q_steps > 0:
            raise ConfigError(f"q_steps={config.q_steps} with a fixed q_fn: set q_steps=0 (no Q network is learned)")
        if q_fn is not None and not config.freeze_q:
            raise ConfigError(f"freeze_q={config.freeze_q!r} with a fixed q_fn is not accepted: a given Q function has no "
                              "network to keep training in phase 3; accepted values: freeze_q=True (with q_steps=0)")
        self.obs_norm = Normalizer.fit(dataset.observations)
        self.actions = self.scaler.normalize(dataset.actions).clamp(-1, 1)
        self.policy = FlowPolicy(dataset.obs_dim, dataset.act_dim, self.obs_norm, hidden=config.policy_hidden,
                                 depth=config.policy_depth, steps=config.sampler_steps, method=config.sampler_method)
        self.act_sampler = ODESampler(config.eval_sampler_steps or config.sampler_steps,
                                      config.eval_sampler_method or config.sampler_method)
        self.q_fn = q_fn
        self.q = None if q_fn is not None else TwinQ(dataset.obs_dim, dataset.act_dim, Normalizer.fit(dataset.observations), hidden=config.q_hidden, depth=config.q_depth)
        self.q_target: TwinQ | None = None
        n = len(dataset)
        self.n_support = n if config.support_states is None else min(config.support_states, n)
        k = config.support_size + int(config.include_dataset_action)
        self.tables = SupportTable(self.n_support, k, dataset.act_dim, 0 if config.freeze_q else config.q_support_size)
        self.ema_names: tuple[str, ...] = () if self.q is None else ("q",)
        self._q_phase_support: Tensor | None = None

    # ----------------------------------------------------------------------------- the Trainer protocol
    def networks(self) -> dict[str, nn.Module]:
        nets = {"policy": self.policy, "tables": self.tables}
        if self.q is not None:
            nets["q"] = self.q
        return nets

    def bind(self, trainer) -> None:
        """Use the Trainer's EMA of Q as the Polyak target network (call once the Trainer exists)."""
        if self.q is not None:
            self.q_target = trainer.ema["q"].model

    def phase(self, step: int) -> str:
        k1, k2, _ = self.cfg.phase_ends
        return "behaviour" if step < k1 else "q" if step < k2 else "improve"

    def batch(self, step: int, generator: torch.Generator) -> dict:
        """The batch of global step ``step`` (draws with the Trainer's generator; renews supports when due)."""
        cfg, d = self.cfg, self.data
        phase = self.phase(step)
        if phase == "behaviour" or (phase == "improve" and cfg.beta == 0):
            idx = torch.randint(0, len(d), (cfg.train.batch_size,), generator=generator)
            return {"phase": phase, "obs": d.observations[idx], "act": self.actions[idx]}
        if phase == "q":
            if self._q_phase_support is None:  # pi_0 is fixed in this phase: the same draw on a resume
                g = torch.Generator().manual_seed(self.seed * 1_000_003 + 1)
                self._q_phase_support = self.sample_support(d.next_observations, cfg.q_support_size, generator=g)
            idx = torch.randint(0, len(d), (cfg.train.batch_size,), generator=generator)
            return {"phase": phase, "q": self._q_batch(idx, self._q_phase_support[idx])}
        k = step - cfg.phase_ends[1]
        if k % cfg.renew_every == 0:
            self.renew_support(generator)
        t = self.tables
        j = torch.randint(0, self.n_support, (cfg.improve_batch_size,), generator=generator)
        obs = d.observations[t.support_idx[j]]
        out = {"phase": phase, "obs": obs, "support": t.support[j], "beta": self.beta_at(k)}
        if cfg.freeze_q:
            out["support_q"] = t.support_q[j]
        else:  # Q changes every step: weight with the current Q, never with values from the last renewal
            out["support_q"] = self.q_value(obs, t.support[j])
            jq = torch.randint(0, self.n_support, (cfg.train.batch_size,), generator=generator)
            out["q"] = self._q_batch(t.support_idx[jq], t.next_support[jq])
        return out

    def beta_at(self, k: int) -> float:
        """beta of phase-3 step k (0-based): constant, or beta (l + 1) / L at renewal l of L (beta_schedule)."""
        cfg = self.cfg
        if cfg.beta_schedule == "constant":
            return cfg.beta
        n_renewals = -(-cfg.improve_steps // cfg.renew_every)
        return cfg.beta * (k // cfg.renew_every + 1) / n_renewals

    def _q_batch(self, idx: Tensor, next_support: Tensor) -> dict:
        d = self.data
        return {"obs": d.observations[idx], "act": self.actions[idx], "rew": self.cfg.reward_scale * d.rewards[idx],
                "next_obs": d.next_observations[idx], "term": d.terminals[idx], "next_support": next_support}

    def loss(self, batch: dict, step: int, generator: torch.Generator) -> tuple[Tensor, dict]:
        cfg, phase = self.cfg, batch["phase"]
        code = {"behaviour": 0, "q": 1, "improve": 2}[phase]
        if "support" not in batch and "q" not in batch:  # behaviour cloning (phase 1, or phase 3 with beta = 0)
            loss = self.policy.per_sample_loss(batch["obs"], batch["act"], generator=generator).mean()
            return loss, {"loss": loss.detach(), "phase": code}
        if "support" not in batch:  # phase 2
            loss = self._td(batch["q"])
            return loss, {"loss": loss.detach(), "q_loss": loss.detach(), "phase": code}
        loss, g = qipo_policy_loss(self.policy, batch["obs"], batch["support"], batch["support_q"], batch.get("beta", cfg.beta),
                                   weight_all_actions=cfg.weight_all_actions, weight_cap=cfg.weight_cap, q_norm=cfg.q_norm,
                                   generator=generator)
        logs = {"policy_loss": loss.detach(), "phase": code,
                "per_state_ess": effective_sample_size(g, dim=-1).mean()}
        if "q" in batch:
            q_loss = self._td(batch["q"])
            logs["q_loss"] = q_loss.detach()
            loss = loss + q_loss  # independent terms: the policy loss does not depend on Q's parameters
        logs["loss"] = loss.detach()
        return loss, logs

    def _td(self, qb: dict) -> Tensor:
        if self.q_target is None:
            raise ConfigError("QIPO has no Q target network: call bind(trainer) once the Trainer exists")
        return td_loss(self.q, self.q_target, qb, self.cfg.gamma, self.cfg.beta_q)

    # ----------------------------------------------------------------------------------- supports, Q
    @torch.no_grad()
    def sample_support(self, obs: Tensor, m: int, chunk: int = 4096, generator: torch.Generator | None = None) -> Tensor:
        """m normalised actions per state from the current policy: (N, m, act_dim)."""
        g = self.gen if generator is None else generator
        return torch.cat([self.policy.sample(obs[i : i + chunk], m, generator=g) for i in range(0, obs.shape[0], chunk)])

    def q_value(self, obs: Tensor, actions: Tensor) -> Tensor:
        """Q(s_i, a_ij) for normalised actions (B, K, act_dim) -> (B, K): q_fn if given, else the learned min-head Q."""
        if self.q_fn is not None:
            B, K, A = actions.shape
            with torch.no_grad():
                return self.q_fn(obs.repeat_interleave(K, 0), actions.reshape(B * K, A)).reshape(B, K)
        return self.q.q_support(obs, actions)

    @torch.no_grad()
    def renew_support(self, generator: torch.Generator | None = None) -> None:
        """Replace the support table: M actions from the current policy for every state (or a random subset of
        ``support_states``), the dataset action in column 0 when ``include_dataset_action``; their Q values when Q
        is frozen, and the next-state support of the Q target when it is not (drawn here, once per renewal)."""
        cfg, t, n = self.cfg, self.tables, len(self.data)
        g = self.gen if generator is None else generator
        idx = torch.arange(n) if self.n_support >= n else torch.randperm(n, generator=g)[: self.n_support]
        obs = self.data.observations[idx]
        sup = self.sample_support(obs, cfg.support_size, generator=g)
        if cfg.include_dataset_action:
            sup = torch.cat([self.actions[idx][:, None, :], sup], dim=1)
        t.support_idx.copy_(idx)
        t.support.copy_(sup)
        if cfg.freeze_q:
            t.support_q.copy_(self.q_value(obs, sup))
        else:
            t.next_support.copy_(self.sample_support(self.data.next_observations[idx], cfg.q_support_size, generator=g))

    # -------------------------------------------------------------------------------- step 4: act
    @torch.no_grad()
    def act(self, obs: np.ndarray | Tensor, best_of: int | None = None) -> np.ndarray:
        """Environment actions for a batch of observations: one policy sample (best_of = 1, the method) or the
        best of N samples by Q (an option reported separately)."""
        n = self.cfg.best_of if best_of is None else best_of
        check_positive("best_of", n, integer=True)
        o = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        if o.dim() == 1:
            o = o[None]
        if o.shape[1] != self.data.obs_dim:
            raise DataError(f"observation has shape {tuple(o.shape)}; accepted: (B, {self.data.obs_dim})")
        a = self.policy.sample(o, n, generator=self.gen, sampler=self.act_sampler)
        if n > 1:
            best = self.q_value(o, a).argmax(1)
            a = a[torch.arange(o.shape[0]), best][:, None]
        return self.scaler.unnormalize(a[:, 0]).numpy()

    def config_dict(self) -> dict:
        return asdict(self.cfg)


def make_trainer(algo: QIPO, out_dir=None):
    """The one Trainer of a QIPO run (policy lr = train.lr, Q lr = q_lr; the Q target is its EMA of Q)."""
    from agm.training import Trainer

    lrs = {"q": algo.cfg.q_lr} if algo.q is not None else None
    trainer = Trainer(algo, algo.batch, algo.cfg.train, out_dir=out_dir, seed=algo.seed, lrs=lrs)
    algo.bind(trainer)
    return trainer


def fit_qipo(algo: QIPO, steps: int | None = None, trainer=None):
    """Run Algorithm 2 in memory up to global step ``steps`` (default: all three phases); returns the Trainer
    (call again with a larger ``steps`` to continue, e.g. evaluating between chunks)."""
    trainer = make_trainer(algo) if trainer is None else trainer
    trainer.fit(algo.cfg.train.steps if steps is None else steps)
    return trainer
