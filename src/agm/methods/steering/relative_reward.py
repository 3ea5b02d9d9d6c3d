"""Relative reward extraction from two diffusion/flow models and steering (Nuti, Franzmeyer, Henriques,
NeurIPS 2023, "Extracting Reward Functions from Diffusion Models"; arXiv 2306.01804).

A scalar field rho_psi(x, t) is fitted so that its gradient explains the difference of an expert
("high") and a base ("low") model (arXiv 2306.01804, paper form):

    L_RRF(psi) = E_{t, x_t} w(t) || grad_x rho_psi(x_t, t) - target(x_t, t) ||^2,

    target = s_e - s_b                   ('score', default; implied rho = rho*)
           = eps_b - eps_e = sigma_t Δs   ('eps', the code's ``diffusion_predicts_mean=False`` form)
           = v_e - v_b = eta_t Δs         ('velocity', flow models; eta_t = (1 - t) / t)

with w(t) = sigma_t^2 by default ('sigma2', arXiv 2306.01804; 'none' as option). For exact models,
rho* = log p_t^e - log p_t^b + C(t); for a tilt p_e ∝ p_b exp(r), rho*(x, t) = log E_{p_b(x1|x_t=x)}[e^{r(x1)}]
and at the data end (t = 1 here; t = 0 in the paper's diffusion convention) rho* = r + C.

Time convention: agm's (noise at t = 0, data at t = 1). Models are wrapped in ``ScoreModel`` adapters
so both flow-matching velocity nets and eps-prediction diffusion nets can be compared.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from agm.tensors import expand_time
from agm.errors import ConfigError, DataError, check_choice, check_positive
from agm.samplers import ODESampler

TARGETS = ("score", "eps", "velocity")
WEIGHTINGS = ("sigma2", "none")
EVAL_AT = ("xt", "base_mean")


class FlowScore:
    """Score adapter for a linear-FM velocity net (data at t = 1): alpha_t = t, sigma_t = 1 - t,

        s(x, t) = (t v(x, t) - x) / (1 - t),  eta_t = (1 - t) / t  (arXiv 2409.08861).
    """

    def __init__(self, velocity: Callable[[Tensor, Tensor], Tensor], t_max: float = 1.0 - 1e-3) -> None:
        self.velocity = velocity
        self.t_max = t_max

    def alpha(self, t: Tensor) -> Tensor:
        return t

    def sigma(self, t: Tensor) -> Tensor:
        return 1.0 - t

    def eta(self, t: Tensor) -> Tensor:
        """Velocity = kappa x + eta s; eta_t = (1 - t) / t."""
        return (1.0 - t) / t.clamp_min(1e-6)

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        tb = expand_time(t, x).clamp(max=self.t_max)
        return (tb * self.velocity(x, t) - x) / (1.0 - tb)


class EpsScore:
    """Score adapter for an eps-prediction diffusion net x_t = alpha_t x + sigma_t eps (data at t = 1):
    s(x, t) = -eps_hat(x, t) / sigma_t (arXiv 2503.04975, library conventions). ``alpha``/``sigma`` are callables
    of t (for example ``agm.paths.vp.VPPath``'s schedule)."""

    def __init__(self, eps_model: Callable[[Tensor, Tensor], Tensor], alpha: Callable[[Tensor], Tensor], sigma: Callable[[Tensor], Tensor]) -> None:
        self.eps_model = eps_model
        self.alpha = alpha
        self.sigma = sigma

    def eta(self, t: Tensor) -> Tensor:
        raise ConfigError("target='velocity' needs flow-matching models (FlowScore); use target='score' or 'eps'")

    def score(self, x: Tensor, t: Tensor) -> Tensor:
        return -self.eps_model(x, t) / expand_time(self.sigma(t), x).clamp_min(1e-4)


def _model_dim(model: object) -> int | None:
    inner = getattr(model, "velocity", None) or getattr(model, "eps_model", None) or model
    return getattr(inner, "dim", None)


def check_models(base: object, expert: object, dim: int | None = None) -> None:
    """Raise ConfigError when the base and expert models (or the data) differ in data dimension.

    Uses a ``dim`` attribute when present, else probes both models on a (2, dim) input.
    """
    db, de = _model_dim(base), _model_dim(expert)
    if db is not None and de is not None and db != de:
        raise ConfigError(f"expert model has data dimension {de} but base model has {db}; the two models must share the data space")
    if dim is not None:
        for name, m, d in (("base", base, db), ("expert", expert, de)):
            if d is not None and d != dim:
                raise ConfigError(f"data dimension {dim} (of the data given to the reward network) does not match the {name} model's data dimension {d}; both must act on the same space")
            try:
                with torch.no_grad():
                    out = m.score(torch.zeros(2, dim), torch.full((2,), 0.5))
            except RuntimeError as exc:  # shape mismatch inside the net
                raise ConfigError(f"data dimension {dim} does not fit the {name} model (it fails on a (2, {dim}) input): {exc}") from exc
            if out.shape != (2, dim):
                raise ConfigError(f"{name} model returns shape {tuple(out.shape[1:])} for data dimension {dim}; expected ({dim},)")


@dataclass
class RelativeRewardLoss:
    """Per-sample relative-reward regression loss (Nuti et al. 2023, L_RRF; arXiv 2306.01804).

        l_i = w(t_i) || grad_x rho_psi(y_i, t_i) - target(x_t^i, t_i) ||^2 / D

    target in TARGETS (see module docstring); weighting 'sigma2' (w = sigma_t^2, default) or
    'none'. ``eval_at`` 'xt' (default: rho evaluated at x_t) or 'base_mean' (official code:
    y = base posterior-mean prediction E_b[x1 | x_t]; our choice of the flow analogue). Needs double
    backprop (create_graph=True).
    """

    base: FlowScore | EpsScore
    expert: FlowScore | EpsScore
    target: str = "score"
    weighting: str = "sigma2"
    eval_at: str = "xt"

    def __post_init__(self) -> None:
        check_choice("relative_reward.target", self.target, TARGETS)
        check_choice("relative_reward.weighting", self.weighting, WEIGHTINGS)
        check_choice("relative_reward.eval_at", self.eval_at, EVAL_AT)
        check_models(self.base, self.expert)

    def regression_target(self, x: Tensor, t: Tensor) -> Tensor:
        """The (detached) target at (x_t, t) in the chosen space (arXiv 2306.01804)."""
        with torch.no_grad():
            ds = self.expert.score(x, t) - self.base.score(x, t)
            return ds * expand_time(self.scale(t), x)

    def scale(self, t: Tensor) -> Tensor:
        """Positive factor c(t) with target = c(t) Δs, so the fitted rho ≈ c(t) rho* (arXiv 2306.01804)."""
        if self.target == "score":
            return torch.ones_like(t)
        if self.target == "eps":
            return self.base.sigma(t)
        return self.base.eta(t)

    def reward_input(self, x: Tensor, t: Tensor) -> Tensor:
        """Where rho_psi is evaluated (detached): x_t itself ('xt'), or the base model's posterior mean
        E_b[x1 | x_t = x] = (x + sigma_t^2 s_b(x, t)) / alpha_t by Tweedie's formula ('base_mean')."""
        if self.eval_at == "xt":
            return x.detach()
        with torch.no_grad():
            s = self.base.score(x, t)
            a, sg = expand_time(self.base.alpha(t), x), expand_time(self.base.sigma(t), x)
            return ((x + sg**2 * s) / a.clamp_min(1e-3)).detach()

    def __call__(self, reward_net: nn.Module, x: Tensor, t: Tensor) -> Tensor:
        target = self.regression_target(x, t)
        y = self.reward_input(x, t).requires_grad_(True)
        rho = reward_net(y, t).reshape(-1)
        (grad,) = torch.autograd.grad(rho.sum(), y, create_graph=True)
        w = self.base.sigma(t) ** 2 if self.weighting == "sigma2" else torch.ones_like(t)
        if self.target != "score" and self.weighting == "sigma2":
            w = w / self.scale(t).clamp_min(1e-6) ** 2  # keep the score-space weighting sigma_t^2 |.|^2
        return w * (grad - target).pow(2).mean(dim=1)


def reward_gradient(reward_net: nn.Module, x: Tensor, t: Tensor) -> Tensor:
    """grad_x rho_psi(x, t) (no graph kept)."""
    with torch.enable_grad():
        y = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(reward_net(y, t).sum(), y)
    return g


def train_relative_reward(
    reward_net: nn.Module,
    loss: RelativeRewardLoss,
    data: Tensor,
    *,
    steps: int = 2000,
    batch: int = 256,
    lr: float = 1e-3,
    t_min: float = 0.02,
    t_max: float = 0.98,
    seed: int = 0,
) -> list[float]:
    """Fit rho_psi with the shared Trainer (AdamW without weight decay, no clipping) on x_t = t x1 + (1 - t) x0, x1 from ``data`` (a balanced base+expert mix,
    arXiv 2306.01804), t ~ U[t_min, t_max]. Returns the loss history (one value per step)."""
    check_positive("steps", steps, integer=True)
    check_positive("batch", batch, integer=True)
    if data.dim() != 2 or not torch.isfinite(data).all():
        raise DataError(f"data must be a finite (N, D) tensor; got shape {tuple(data.shape)}")
    check_models(loss.base, loss.expert, data.shape[1])
    from agm.methods.steering.fitting import RewardRegression, fit, train_config

    cfg = train_config(steps=steps, batch_size=batch, lr=lr)
    _, records = fit(RewardRegression(reward_net, loss, t_min, t_max), data, cfg, seed=seed)
    hist = [float(r["loss"]) for r in records]
    return hist


class SteeredVelocity(nn.Module):
    """Base velocity steered by a learned relative reward (arXiv 2306.01804, score-consistent form, in FM units):

        v(x, t) = v_b(x, t) + w eta_t grad_x rho_psi(x, t) / c(t)    for t >= t_start, else v_b,

    where c(t) is the loss's target scale (rho_psi ≈ c(t) rho*), eta_t = (1 - t)/t. With exact rho* and
    w = 1 this is the expert's velocity (oracle O-C4). t_start > 0 avoids eta_t -> inf at t = 0 (the
    analogue of the code's t_stopgrad, at the noise end).
    """

    def __init__(self, base_velocity: Callable[[Tensor, Tensor], Tensor], reward_net: nn.Module, loss: RelativeRewardLoss, scale: float = 1.0, t_start: float = 0.02) -> None:
        super().__init__()
        check_positive("scale", float(scale), allow_zero=True)
        self.base_velocity = base_velocity
        self.reward_net = reward_net
        self.loss = loss
        self.scale = float(scale)
        self.t_start = float(t_start)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        v = self.base_velocity(x, t)
        if self.scale == 0.0:
            return v
        tt = t.expand(x.shape[0]) if t.dim() == 0 else t
        g = reward_gradient(self.reward_net, x, tt)
        fac = (1 - tt) / tt.clamp_min(self.t_start) / self.loss.scale(tt.clamp_min(self.t_start)).clamp_min(1e-6)
        fac = torch.where(tt >= self.t_start, fac, torch.zeros_like(fac))
        return v + self.scale * fac[:, None] * g


def steer_sample(base_velocity, reward_net, loss, n: int, dim: int, *, scale: float = 1.0, steps: int = 100, t_start: float = 0.02, seed: int = 0) -> Tensor:
    """Samples of the steered ODE (Heun) from N(0, I) at t = 0 to t = 1."""
    field = SteeredVelocity(base_velocity, reward_net, loss, scale=scale, t_start=t_start)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, dim, generator=g)
    return ODESampler(steps=steps, method="heun").sample(field, x0).detach()
