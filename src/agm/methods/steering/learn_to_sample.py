"""Learning to sample from a frozen flow/diffusion model by inverse RL (Bourdrez, Vérine, Cappé, 2026,
arXiv 2602.08689; docs/steering.md).

The frozen model's sampler is a finite-horizon MDP (arXiv 2602.08689), in agm's convention (noise at t = 0,
data at t = 1, linear FM velocity v):

* state s_k = (x_k, t_k), k = 0..N, x_0 ~ N(0, I), t_0 = 0; horizon N = number of network evaluations;
* action a_k from a discrete set that modifies one solver step (one NFE per step, whatever the action):
  - 'step'  : step-size factor c: t_{k+1} = t_k + c (1 - t_k)/(N - k) (c = 1 is the uniform grid; the last
              step always lands on t = 1); x_{k+1} = x_k + (t_{k+1} - t_k) v(x_k, t_k). [our choice]
  - 'churn' : EDM stochasticity injection (arXiv 2602.08689) in the VE coordinates y = x/t, sigma_t = (1 - t)/t:
              sigma_hat = sigma_t (1 + gamma), t_hat = 1/(1 + sigma_hat),
              x_hat = (t_hat/t) x + sqrt((1 - t_hat)^2 - (t_hat (1 - t)/t)^2) xi, then Euler from t_hat to t_{k+1}.
  - 'scale' : score scale lambda (arXiv 2602.08689): v_lambda = x/t + lambda (v - x/t) (for t > 0).
  Each family contains the identity action (c = 1, gamma = 0, lambda = 1).
* no reward is given: the policy pi_theta(a_k | s_k) minimises sum_k omega_k D_f(p^E_k || p^theta_k)
  (arXiv 2602.08689), p^E_k = data noised to t_k (x^E = t_k y + (1 - t_k) xi, free to draw). With
  r = p^E/p^theta estimated by a t-conditioned discriminator (r_hat = exp d_psi), the gradient is
  E[grad log pi(a_j|s_j) G_j], G_j = sum_{k > j} R_k, R_k = -omega_k c_f(r_hat(x_k, t_k)), c_f(r) = f(r) - r f'(r).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from agm.errors import ConfigError, DataError, check_choice, check_positive
from agm.nets import MLP, TimeMLP

ACTION_FAMILIES = ("step", "churn", "scale")
DEFAULT_VALUES: dict[str, tuple[float, ...]] = {
    "step": (0.5, 0.75, 1.0, 1.5, 2.0),
    "churn": (0.0, 0.1, 0.25, 0.5, 1.0),
    "scale": (0.8, 0.9, 1.0, 1.1, 1.2),
}
IDENTITY = {"step": 1.0, "churn": 0.0, "scale": 1.0}
DIVERGENCES = ("reverse_kl", "forward_kl", "pr")
LEVEL_WEIGHTS = ("all", "final")


# ------------------------------------------------------------------------------------------ f-divergences
def c_f(r: Tensor, divergence: str = "reverse_kl", pr_lambda: float = 1.0) -> Tensor:
    """c_f(r) = f(r) - r f'(r), the per-state cost of grad D_f(p^E || p^theta) = E_theta[grad log p^theta c_f(r)]
    (arXiv 2602.08689): reverse KL f = -log u -> 1 - log r; forward KL f = u log u -> -r;
    PR-divergence f = max(lambda u, 1) - max(lambda, 1) -> -max(lambda, 1) if lambda r > 1 else 1 - max(lambda, 1)."""
    check_choice("divergence", divergence, DIVERGENCES)
    if divergence == "reverse_kl":
        return 1.0 - torch.log(r)
    if divergence == "forward_kl":
        return -r
    check_positive("pr_lambda", float(pr_lambda))
    m = max(pr_lambda, 1.0)
    return torch.where(pr_lambda * r > 1, torch.full_like(r, -m), torch.full_like(r, 1.0 - m))


# ---------------------------------------------------------------------------------------------- the MDP
@dataclass
class Rollout:
    """xs (N + 1, B, D), ts (N + 1, B), actions (N, B), logp (N, B) (with grad to the policy), entropy (N, B)."""

    xs: Tensor
    ts: Tensor
    actions: Tensor
    logp: Tensor
    entropy: Tensor


class FlowSamplerMDP:
    """Sampling of a frozen linear-FM velocity ``velocity(x, t)`` as a finite-horizon MDP (module docstring).

    Args:
        velocity: frozen model, called under no_grad.
        dim: data dimension.
        horizon: N, the number of solver steps (= network evaluations).
        family: one of ACTION_FAMILIES.
        values: the discrete action values (must contain the family's identity value).
    """

    def __init__(self, velocity: Callable[[Tensor, Tensor], Tensor], dim: int, horizon: int, family: str = "step", values: Sequence[float] | None = None) -> None:
        check_positive("horizon", horizon, integer=True)
        check_positive("dim", dim, integer=True)
        check_choice("action_family", family, ACTION_FAMILIES)
        vals = tuple(float(v) for v in (values if values is not None else DEFAULT_VALUES[family]))
        if IDENTITY[family] not in vals:
            raise ConfigError(f"action values {list(vals)} for family '{family}' must contain the identity action {IDENTITY[family]}")
        if family == "step" and any(v <= 0 for v in vals):
            raise ConfigError(f"action values {list(vals)}: step factors must be > 0")
        if family == "churn" and any(v < 0 for v in vals):
            raise ConfigError(f"action values {list(vals)}: churn gamma must be >= 0")
        self.velocity, self.dim, self.horizon, self.family = velocity, dim, horizon, family
        self.values = torch.tensor(vals)
        self.identity_action = vals.index(IDENTITY[family])

    @property
    def n_actions(self) -> int:
        return len(self.values)

    def reset(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """x_0 ~ N(0, I), t_0 = 0."""
        return torch.randn(n, self.dim, generator=generator), torch.zeros(n)

    @torch.no_grad()
    def step(self, x: Tensor, t: Tensor, k: int, action: Tensor, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """One modified solver step from (x_k, t_k) with action indices ``action`` (B,) -> (x_{k+1}, t_{k+1})."""
        if not 0 <= k < self.horizon:
            raise ConfigError(f"step index k={k} is outside the horizon [0, {self.horizon})")
        val = self.values[action]
        remaining = self.horizon - k
        if self.family == "step":
            if remaining == 1:
                t_next = torch.ones_like(t)
            else:
                t_next = t + val * (1 - t) / remaining
                t_next = torch.minimum(t_next, 1 - 0.05 * (1 - t))
            return x + (t_next - t)[:, None] * self.velocity(x, t), t_next
        t_next = t + (1 - t) / remaining
        if self.family == "churn":
            pos = t > 0
            tc = t.clamp_min(1e-6)
            sig = (1 - tc) / tc
            t_hat = torch.where(pos, 1 / (1 + sig * (1 + val)), t)
            var = ((1 - t_hat) ** 2 - (t_hat * (1 - tc) / tc) ** 2).clamp_min(0.0)
            xi = torch.randn(x.shape, generator=generator)
            x_hat = torch.where(pos[:, None], (t_hat / tc)[:, None] * x + var.sqrt()[:, None] * xi, x)
            return x_hat + (t_next - t_hat)[:, None] * self.velocity(x_hat, t_hat), t_next
        v = self.velocity(x, t)
        pos = (t > 0)[:, None]
        v = torch.where(pos, v + (val[:, None] - 1) * (v - x / t.clamp_min(1e-6)[:, None]), v)
        return x + (t_next - t)[:, None] * v, t_next

    def rollout(self, policy: "SamplerPolicy", n: int, *, generator: torch.Generator | None = None, greedy: bool = False, actions: Tensor | None = None) -> Rollout:
        """Roll out ``policy`` (or fixed ``actions`` (N, B) / (N,)); log-probs keep the policy's graph."""
        check_horizon(policy, self)
        x, t = self.reset(n, generator=generator)
        xs, ts, acts, logps, ents = [x], [t], [], [], []
        for k in range(self.horizon):
            dist = policy.distribution(x, t, k)
            if actions is not None:
                a = actions[k].expand(n) if actions[k].dim() == 0 else actions[k]
            elif greedy:
                a = dist.probs.argmax(-1)
            else:
                u = torch.rand(n, 1, generator=generator)
                a = (dist.probs.detach().cumsum(-1) < u).sum(-1).clamp(max=self.n_actions - 1)
            logps.append(dist.log_prob(a))
            ents.append(dist.entropy())
            x, t = self.step(x, t, k, a, generator=generator)
            xs.append(x), ts.append(t), acts.append(a)
        return Rollout(torch.stack(xs), torch.stack(ts), torch.stack(acts), torch.stack(logps), torch.stack(ents))


class SamplerPolicy(nn.Module):
    """pi_theta(a_k | x_k, t_k, k): per-step logits (an open-loop schedule) plus, if ``state_dependent``,
    a small MLP of (x, t) (zero-initialised, so training starts from the schedule). ``init_identity_logit``
    biases the identity action at init (the paper notes sensitivity to initialisation; arXiv 2602.08689)."""

    def __init__(self, horizon: int, n_actions: int, *, dim: int | None = None, state_dependent: bool = False, hidden: int = 32, identity_action: int | None = None, init_identity_logit: float = 0.0) -> None:
        super().__init__()
        check_positive("horizon", horizon, integer=True)
        check_positive("n_actions", n_actions, integer=True)
        self.horizon, self.n_actions = horizon, n_actions
        logits = torch.zeros(horizon, n_actions)
        if identity_action is not None:
            logits[:, identity_action] = init_identity_logit
        self.logits = nn.Parameter(logits)
        self.net = None
        if state_dependent:
            if dim is None:
                raise ConfigError("SamplerPolicy(state_dependent=True) needs dim")
            self.net = MLP(dim + 1, n_actions, hidden=hidden, depth=2)
            nn.init.zeros_(self.net.net[-1].weight)
            nn.init.zeros_(self.net.net[-1].bias)

    def distribution(self, x: Tensor, t: Tensor, k: int) -> torch.distributions.Categorical:
        logits = self.logits[k].expand(x.shape[0], -1)
        if self.net is not None:
            logits = logits + self.net(torch.cat([x, t[:, None]], 1))
        return torch.distributions.Categorical(logits=logits)


def check_horizon(policy: SamplerPolicy, mdp: FlowSamplerMDP) -> None:
    """Raise ConfigError when the policy's horizon or action count does not match the sampler MDP."""
    if policy.horizon != mdp.horizon:
        raise ConfigError(f"policy horizon={policy.horizon} does not match the sampler's horizon={mdp.horizon} (number of solver steps)")
    if policy.n_actions != mdp.n_actions:
        raise ConfigError(f"policy n_actions={policy.n_actions} does not match the sampler's {mdp.n_actions} actions {mdp.values.tolist()}")


class Discriminator(nn.Module):
    """Noise-level-conditioned logit d_psi(x, t); trained by logistic loss (expert = 1, sampler = 0), its optimum
    is log p^E_t(x)/p^theta_t(x) on balanced batches (arXiv 2602.08689, oracle O-B2)."""

    def __init__(self, dim: int, hidden: int = 64, depth: int = 2, clip: float = 10.0) -> None:
        super().__init__()
        self.net = TimeMLP(dim, hidden=hidden, depth=depth, out_dim=1)
        self.clip = clip

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(x, t).reshape(-1).clamp(-self.clip, self.clip)


def discriminator_loss(disc: Discriminator, x_expert: Tensor, t_expert: Tensor, x_model: Tensor, t_model: Tensor) -> Tensor:
    """Balanced logistic loss: -E_E log sigmoid(d) - E_theta log(1 - sigmoid(d))."""
    f = nn.functional.softplus
    return f(-disc(x_expert, t_expert)).mean() + f(disc(x_model, t_model)).mean()


def expert_states(data: Tensor, t: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Expert occupancy at levels t (B,): x^E = t y + (1 - t) xi, y ~ data, xi ~ N(0, I) (arXiv 2602.08689)."""
    y = data[torch.randint(0, data.shape[0], (t.shape[0],), generator=generator)]
    return t[:, None] * y + (1 - t[:, None]) * torch.randn(y.shape, generator=generator)


@dataclass
class IRLConfig:
    """Settings of ``train_sampler_policy`` (defaults: arXiv 2602.08689 recommendations where it gives them)."""

    iterations: int = 300
    batch: int = 256
    lr: float = 0.05
    disc_lr: float = 2e-3
    disc_steps: int = 2
    divergence: str = "reverse_kl"
    pr_lambda: float = 1.0
    level_weights: str = "all"
    entropy_coef: float = 0.01
    normalise_advantage: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_positive("iterations", self.iterations, integer=True)
        check_positive("batch", self.batch, integer=True)
        check_positive("lr", self.lr)
        check_positive("disc_lr", self.disc_lr)
        check_positive("disc_steps", self.disc_steps, integer=True)
        check_choice("divergence", self.divergence, DIVERGENCES)
        check_choice("level_weights", self.level_weights, LEVEL_WEIGHTS)
        check_positive("entropy_coef", self.entropy_coef, allow_zero=True)


def train_sampler_policy(mdp: FlowSamplerMDP, policy: SamplerPolicy, data: Tensor, cfg: IRLConfig, *, disc: Discriminator | None = None, callback: Callable[[int, dict], None] | None = None) -> list[dict]:
    """Policy-gradient IRL (arXiv 2602.08689): roll out, update the discriminator on expert vs sampler
    states at the same levels, reward R_k = -omega_k c_f(exp d_psi(x_k, t_k)) (k = 1..N; omega = 1 on all
    levels or on the final one only), reward-to-go G_j = sum_{k > j} R_k, per-step batch-mean baseline,
    REINFORCE + entropy bonus. Trains through the shared Trainer
    (:class:`agm.methods.steering.fitting.InverseRLSampler`: ``disc_steps`` discriminator steps, then one policy step,
    per iteration; AdamW without weight decay, no clipping). Returns per-iteration logs."""
    check_horizon(policy, mdp)
    if data.dim() != 2 or data.shape[1] != mdp.dim:
        raise DataError(f"data has shape {tuple(data.shape)}; expected (N, {mdp.dim}) to match the sampler")
    if not torch.isfinite(data).all():
        raise DataError("data contains non-finite values")
    from agm.methods.steering.fitting import InverseRLSampler, _dummy_batches, fit, train_config

    torch.manual_seed(cfg.seed)
    disc = disc if disc is not None else Discriminator(mdp.dim)
    method = InverseRLSampler(mdp, policy, disc, data, cfg)
    period = cfg.disc_steps + 1
    tcfg = train_config(steps=cfg.iterations * period, batch_size=cfg.batch, lr=cfg.lr)
    logs: list[dict] = []
    last_disc: list[float] = [float("nan")]

    def record(step: int, rec: dict) -> None:
        if "disc_loss" in rec:
            last_disc[0] = float(rec["disc_loss"])
            return
        log = {"iteration": step // period - 1, "disc_loss": last_disc[0], "mean_return": float(rec["mean_return"]),
               "final_logit": float(rec["final_logit"])}
        logs.append(log)
        if callback is not None:
            callback(log["iteration"], log)

    fit(method, _dummy_batches(cfg.batch), tcfg, seed=cfg.seed, lrs={"policy": cfg.lr, "disc": cfg.disc_lr}, callback=record)
    return logs


def schedule_from_policy(policy: SamplerPolicy) -> list[int]:
    """Greedy action per step of the open-loop part of the policy."""
    return policy.logits.argmax(-1).tolist()
