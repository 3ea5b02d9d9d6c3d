"""Reward fine-tuning of a flow-matching model as memoryless stochastic optimal control (SOC):
Adjoint Matching and other losses of the SOC taxonomy.

Papers: Domingo-Enrich, Drozdzal, Karrer, Chen, "Adjoint Matching", ICLR 2025 (AM) and Domingo-Enrich,
"A Taxonomy of Loss Functions for Stochastic Optimal Control" (TAX), arXiv 2409.08861 and arXiv 2410.00345;
equations in our words in docs/steering.md.

Conventions (kept apart on purpose):
* ``reward_multiplier`` is AM's lambda: the target is p*(x) ∝ p_base(x) exp(reward_multiplier r(x)).
* TAX's lambda is a *noise temperature*; here it is fixed to 1 (AM is TAX with lambda = 1, f = 0,
  g = -reward_multiplier r) and never called lambda in code.

Base model: linear FM velocity v_base (data at t = 1). Memoryless SDE (arXiv 2409.08861, rectified flow)
    dX = b(X, t) dt + sigma(t) dB,  b = 2 v - kappa_t x,  sigma(t) = sqrt(2 (1 - t + h)/(t + h)),
    kappa_t = 1/(t + h)   (offset h = 1/K avoids the t = 0 blow-up, arXiv 2409.08861; offset 0 is exact).
Fine-tuned velocity v_ft gives the control u = (2 / sigma)(v_ft - v_base) (arXiv 2409.08861, FM parameterisation).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

from agm.errors import ConfigError, check_choice, check_positive
from agm.methods.steering.tilt import check_reward_values

Velocity = Callable[[Tensor, Tensor], Tensor]
Reward = Callable[[Tensor], Tensor]

SOC_LOSSES = ("adjoint_matching", "log_variance", "cross_entropy", "relative_entropy", "reward_weighted_regression")
LAST_STEPS = ("noiseless_base", "noisy")
#: per-loss default learning rate (Adam, grad-norm clip 1, cosine decay to 0): the lowest mean W2 to the analytic
#: tilt over 5 seeds in the sweep of experiments/steering/soc_sweep.py (lrs 1e-3..3e-2; adjoint matching is flat
#: over 3e-3..3e-2; experiments/results/steering_soc_sweep.json, docs/steering.md)
SOC_DEFAULT_LR: dict[str, float] = {"adjoint_matching": 3e-3, "log_variance": 1e-2, "cross_entropy": 1e-2, "relative_entropy": 1e-2,
                                    "reward_weighted_regression": 1e-2}
TIME_SUBSAMPLING = ("all", "am")


class MemorylessSchedule:
    """Memoryless noise schedule (arXiv 2409.08861, Thm. 1: sigma(t)^2 = 2 eta_t) of the Gaussian path
    x_t = t x1 + beta_t x0 with beta_t^2 = (1 - t)^2 + s^2 t (1 - t):

        sigma(t)^2 = 2 (1 - t + h) / (t + h) + s^2,  kappa(t) = 1 / (t + h),  b(x, t) = 2 v(x, t) - kappa(t) x.

    ``bridge_sigma`` s = 0 (default) is linear FM (beta_t = 1 - t). s > 0 is the marginal path of a Brownian
    bridge with noise s (the models of ``agm train``, whose drift :class:`BridgeVelocity` turns into the
    velocity v of that path); then eta_t = beta_t (kappa_t beta_t - beta_t') = (1 - t)/t + s^2 / 2 (docs/steering.md).
    ``offset`` h = 0 gives sigma^2 = 2 eta_t exactly; the default is h = 1/K.
    """

    def __init__(self, offset: float = 0.025, bridge_sigma: float = 0.0) -> None:
        check_positive("offset", float(offset), allow_zero=True)
        check_positive("bridge_sigma", float(bridge_sigma), allow_zero=True)
        self.offset = float(offset)
        self.bridge_sigma = float(bridge_sigma)

    def sigma(self, t: Tensor) -> Tensor:
        h = self.offset
        return torch.sqrt(2 * (1 - t + h) / (t + h) + self.bridge_sigma**2)

    def kappa(self, t: Tensor) -> Tensor:
        return 1.0 / (t + self.offset)

    def eta(self, t: Tensor) -> Tensor:
        return (1 - t) / t + 0.5 * self.bridge_sigma**2

    def drift(self, v: Tensor, x: Tensor, t: Tensor) -> Tensor:
        return 2 * v - self.kappa(t).reshape(-1, 1) * x


class ResidualVelocity(nn.Module):
    """v_ft(x, t) = v_base(x, t) + delta(x, t) with a trainable ``delta`` whose last linear layer starts at zero,
    so v_ft = v_base at initialisation (arXiv 2409.08861 initialises the fine-tuned model as a copy of the base).
    For a base without parameters (a closed-form velocity) or when only a small head should be trained. The base
    is frozen (its x-derivative still flows)."""

    def __init__(self, base: nn.Module, delta: nn.Module) -> None:
        super().__init__()
        self.base, self.delta = base, delta
        for p in self.base.parameters():
            p.requires_grad_(False)
        last = [m for m in delta.modules() if isinstance(m, nn.Linear)]
        if not last:
            raise ConfigError("ResidualVelocity: delta has no nn.Linear layer to initialise at zero")
        with torch.no_grad():
            last[-1].weight.zero_()
            if last[-1].bias is not None:
                last[-1].bias.zero_()
        self.dim = getattr(base, "dim", getattr(delta, "dim", None))

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.base(x, t) + self.delta(x, t)


class BridgeVelocity(nn.Module):
    """The probability-flow velocity of a Brownian-bridge drift model (``agm train``; path x_t = t x1 + (1 - t) x0
    + s sqrt(t (1 - t)) z, drift b(x, t) = E[(x1 - x)/(1 - t) | x_t = x], bridge noise s = ``bridge_sigma``):

        m = x + (1 - t) b   (the denoiser E[x1 | x_t = x]),   v = m + (beta_t' / beta_t)(x - t m),
        beta_t^2 = (1 - t)^2 + s^2 t (1 - t),   beta_t beta_t' = -(1 - t) + s^2 (1 - 2 t) / 2.

    v has the model's marginals (dX = v dt); with s = 0 it is b itself. Use it with
    ``MemorylessSchedule(bridge_sigma=s)``. Fine-tuning a copy of the drift network inside it gives a fine-tuned
    bridge drift, sampled with the model's own Euler-Maruyama sampler (noise s)."""

    def __init__(self, drift: nn.Module, bridge_sigma: float, t_max: float = 0.999) -> None:
        super().__init__()
        check_positive("bridge_sigma", float(bridge_sigma), allow_zero=True)
        self.drift, self.s, self.t_max = drift, float(bridge_sigma), float(t_max)

    def _coef(self, t: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        from agm.tensors import expand_time

        tb = expand_time(t, x).clamp(max=self.t_max)
        beta2 = (1 - tb) ** 2 + self.s**2 * tb * (1 - tb)
        return tb, (-(1 - tb) + 0.5 * self.s**2 * (1 - 2 * tb)) / beta2

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        tb, c = self._coef(t, x)
        m = x + (1 - tb) * self.drift(x, t)
        return m + c * (x - tb * m)


class FlatField(nn.Module):
    """A field on images (B, *shape) seen as one on flat vectors (B, D), D = prod(shape): the SOC code works on
    (B, D) states."""

    def __init__(self, net: nn.Module, shape: tuple[int, ...] | list[int]) -> None:
        super().__init__()
        self.net, self.shape = net, tuple(int(s) for s in shape)
        self.dim = 1
        for s in self.shape:
            self.dim *= s

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        return self.net(x.reshape(x.shape[0], *self.shape), t).reshape(x.shape[0], -1)


@dataclass
class Trajectory:
    """A memoryless EM rollout: states xs (K + 1, B, D), times ts (K + 1,), noise increments dB (K, B, D)
    (sqrt(h) xi, zero on a noiseless step) and ``noisy`` (K,) marking the SDE steps that carry a control."""

    xs: Tensor
    ts: Tensor
    dB: Tensor
    noisy: Tensor
    #: the (detached) controls ū of the noisy steps that generated the paths, set at the first loss evaluation;
    #: every stop-gradient quantity of the log-variance / cross-entropy losses is a function of it
    u_ref: Tensor | None = None


def _vjp(fn: Callable[[Tensor], Tensor], x: Tensor, cot: Tensor) -> Tensor:
    with torch.enable_grad():
        y = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(y), y, grad_outputs=cot)
    return g


@dataclass
class SOCProblem:
    """Reward fine-tuning problem: frozen ``base`` velocity, trainable ``ft`` velocity (init = copy of base),
    differentiable ``reward`` r(x) -> (B,), ``reward_multiplier`` (AM's lambda), ``steps`` K of the
    uniform grid t_k = k/K, ``schedule`` (memoryless), ``last_step`` 'noiseless_base' (default:
    x_1 = X_{K-1} + h v_base(X_{K-1}, t_{K-1})) or 'noisy' (plain EM), ``time_subsampling`` 'all' (toy
    default) or 'am' (last 10 + 10 random of the first 30 steps for K = 40, scaled with K; arXiv 2409.08861),
    ``loss_clip`` LCT (per-sample, per-step min(LCT, l_k); None = off).
    """

    base: nn.Module
    ft: nn.Module
    reward: Reward
    dim: int
    reward_multiplier: float = 1.0
    steps: int = 40
    schedule: MemorylessSchedule = field(default_factory=MemorylessSchedule)
    last_step: str = "noiseless_base"
    time_subsampling: str = "all"
    loss_clip: float | None = None
    base_pool: Tensor | None = None  # samples of the base model (reward-weighted regression only)

    def __post_init__(self) -> None:
        check_positive("steps", self.steps, integer=True)
        check_positive("reward_multiplier", float(self.reward_multiplier), allow_zero=True)
        check_choice("last_step", self.last_step, LAST_STEPS)
        check_choice("time_subsampling", self.time_subsampling, TIME_SUBSAMPLING)
        for name, m in (("base", self.base), ("ft", self.ft)):
            d = getattr(m, "dim", None)
            if d is not None and d != self.dim:
                raise ConfigError(f"{name} model has data dimension {d} but the problem has dim={self.dim}")
        for p in self.base.parameters():
            p.requires_grad_(False)

    # ------------------------------------------------------------------ dynamics
    @property
    def device(self) -> torch.device:
        """Device of the fine-tuned model (rollouts are drawn there)."""
        for tensor in (*self.ft.parameters(), *self.ft.buffers()):
            return tensor.device
        return torch.device("cpu")

    def times(self) -> Tensor:
        return torch.linspace(0.0, 1.0, self.steps + 1)

    def control(self, x: Tensor, t: Tensor) -> Tensor:
        """u(x, t) = (2 / sigma(t)) (v_ft(x, t) - v_base(x, t))  (arXiv 2409.08861, FM parameterisation).

        The base drift is NOT computed under no_grad: its parameters are frozen, but its derivative in x is part
        of the pathwise gradient of the relative-entropy (discrete adjoint) loss (issue 14)."""
        return (2.0 / self.schedule.sigma(t)).reshape(-1, 1) * (self.ft(x, t) - self.base(x, t))

    def rollout(self, n: int, *, generator: torch.Generator | None = None, differentiable: bool = False, x0: Tensor | None = None) -> Trajectory:
        """Memoryless Euler-Maruyama rollout of the CURRENT fine-tuned model:
        X_{k+1} = X_k + h (2 v_ft - kappa X_k) + sigma(t_k) sqrt(h) xi_k   (arXiv 2409.08861).
        Detached unless ``differentiable`` (discrete adjoint / relative entropy)."""
        dev = self.device if generator is None else generator.device
        ts = self.times().to(dev)
        h = 1.0 / self.steps
        x = torch.randn(n, self.dim, generator=generator, device=dev) if x0 is None else x0
        xs, dbs, noisy = [x], [], []
        with torch.set_grad_enabled(differentiable):
            for k in range(self.steps):
                t = ts[k].expand(n)
                last = k == self.steps - 1
                if last and self.last_step == "noiseless_base":
                    x = x + h * self.base(x, t)  # with grad in x (base parameters are frozen)
                    dbs.append(torch.zeros_like(x))
                    noisy.append(False)
                else:
                    db = torch.randn(x.shape, generator=generator, device=x.device) * h**0.5
                    x = x + h * self.schedule.drift(self.ft(x, t), x, t) + self.schedule.sigma(t).reshape(-1, 1) * db
                    dbs.append(db)
                    noisy.append(True)
                xs.append(x)
        return Trajectory(torch.stack(xs), ts, torch.stack(dbs), torch.tensor(noisy))

    def terminal_reward(self, x1: Tensor) -> Tensor:
        return check_reward_values(self.reward(x1), "reward")

    def lean_adjoint(self, traj: Trajectory) -> Tensor:
        """Lean adjoint (AM eqs. for ã, arXiv 2409.08861): ã_K = -lambda grad r(X_K),
        ã_k = ã_{k+1} + h VJP_x(b_base(., t_k))(X_k)[ã_{k+1}] with the BASE drift only (u does not enter).
        On a noiseless-base last step the drift is v_base itself. Returns ã of shape (K + 1, B, D)."""
        h = 1.0 / self.steps
        n = traj.xs.shape[1]
        with torch.enable_grad():
            y = traj.xs[-1].detach().requires_grad_(True)
            r = self.terminal_reward(y)
            (gr,) = torch.autograd.grad(r.sum(), y)
        if not torch.isfinite(gr).all():
            raise ConfigError("reward gradient is non-finite at some samples; the reward must be differentiable with finite gradients")
        a = -self.reward_multiplier * gr
        out = [a]
        for k in range(self.steps - 1, -1, -1):
            t = traj.ts[k].expand(n)
            if bool(traj.noisy[k]):
                fn = lambda x, t=t: self.schedule.drift(self.base(x, t), x, t)  # noqa: E731
            else:
                fn = lambda x, t=t: self.base(x, t)  # noqa: E731
            a = a + h * _vjp(fn, traj.xs[k], a)
            out.append(a)
        return torch.stack(out[::-1]).detach()

    def _selected_steps(self, generator: torch.Generator | None) -> list[int]:
        ks = [k for k in range(self.steps) if bool(self._noisy_mask()[k])]
        if self.time_subsampling == "all":
            return ks
        n_last = max(1, round(self.steps / 4))
        n_first = max(1, round(3 * self.steps / 4))
        last = [k for k in ks if k >= self.steps - n_last]
        first = [k for k in ks if k < n_first]
        dev = "cpu" if generator is None else generator.device
        perm = torch.randperm(len(first), generator=generator, device=dev)[: min(n_last, len(first))]
        return sorted(set(last) | {first[i] for i in perm.tolist()})

    def _noisy_mask(self) -> Tensor:
        m = torch.ones(self.steps, dtype=torch.bool)
        if self.last_step == "noiseless_base":
            m[-1] = False
        return m

    def _controls(self, traj: Trajectory, ks: list[int]) -> Tensor:
        """u_k at the detached states X_k for k in ks, one batched call: (len(ks), B, D)."""
        n = traj.xs.shape[1]
        x = traj.xs[ks].reshape(-1, self.dim)
        t = traj.ts[ks].repeat_interleave(n)
        return self.control(x, t).reshape(len(ks), n, self.dim)

    def _log_rnd(self, traj: Trajectory) -> tuple[Tensor, Tensor]:
        """Y(u) = lambda r(X_1) - sum_k h <u_k, ū_k> - sum_k <u_k, dB_k> + (1/2) sum_k h |u_k|^2
        (TAX, arXiv 2410.00345, with noise temperature 1, f = 0, g = -lambda r) and Y(ū) (detached)."""
        h = 1.0 / self.steps
        ks = [k for k in range(self.steps) if bool(traj.noisy[k])]
        u = self._controls(traj, ks)
        if traj.u_ref is None:
            traj.u_ref = u.detach()
        ub = traj.u_ref
        db = traj.dB[ks]
        r = self.reward_multiplier * self.terminal_reward(traj.xs[-1]).detach()

        def y_of(uu: Tensor) -> Tensor:
            return r - h * (uu * ub).sum((0, 2)) - (uu * db).sum((0, 2)) + 0.5 * h * uu.pow(2).sum((0, 2))

        return y_of(u), y_of(ub).detach()

    # ------------------------------------------------------------------ losses (per sample, shape (B,))
    def loss(self, name: str, batch: int, *, generator: torch.Generator | None = None,
             trajectory: Trajectory | None = None) -> tuple[Tensor, dict]:
        """Per-sample loss of SOC loss ``name`` (one of SOC_LOSSES) on a fresh on-policy batch (or on the given
        detached ``trajectory``, for adjoint matching, log-variance and cross-entropy: then the loss is a fixed
        function of the parameters, whose gradient the tests check by finite differences).

        * 'adjoint_matching' (AM eq. 42 form, arXiv 2409.08861): sum_{k in S} min(LCT, |u_k + sigma_k ã_k|^2).
        * 'log_variance' (TAX): unbiased batch variance of Y(u), per-sample (Y_i - mean Y)^2 B/(B-1).
        * 'cross_entropy' (TAX): B w_i Y_i(u), w = softmax(Y(ū)) self-normalised (arXiv 2409.08861 recommendation;
          TAX's code uses raw exp(Y)). E_w[Y(u)] = KL(P* || P^u) + const, convex in u. (A table of the
          taxonomy writes w (log Z - Y(u)), which is -KL; minimising it diverges, so we use the sign of the KL.)
        * 'relative_entropy' (discrete adjoint, TAX): sum_k (h/2)|u_k|^2 - lambda r(X_1) backpropagated
          through the EM rollout with fixed noise.
        * 'reward_weighted_regression' (RWR / EFM, arXiv 2503.04975): B softmax(lambda r(x1))_i |v_ft(x_t, t) -
          (x1 - x0)|^2 / D on samples x1 of the BASE model (``base_pool``); its minimiser is the FM velocity of
          the tilted base law, needs no reward gradient.
        """
        check_choice("soc.loss", name, SOC_LOSSES)
        info: dict = {}
        if name == "reward_weighted_regression":
            if self.base_pool is None:
                raise ConfigError("soc.loss='reward_weighted_regression' needs base_pool (samples of the base model)")
            dev = "cpu" if generator is None else generator.device
            idx = torch.randint(0, self.base_pool.shape[0], (batch,), generator=generator, device=dev)
            x1 = self.base_pool.to(dev)[idx]
            wlog = self.reward_multiplier * self.terminal_reward(x1)
            w = torch.softmax(wlog, 0) * batch
            x0 = torch.randn(x1.shape, generator=generator, device=dev)
            t = torch.rand(batch, generator=generator, device=dev)
            xt = t[:, None] * x1 + (1 - t[:, None]) * x0
            info["ess"] = float(batch**2 / w.pow(2).sum())
            return w * (self.ft(xt, t) - (x1 - x0)).pow(2).mean(1), info
        if name == "relative_entropy":
            traj = self.rollout(batch, generator=generator, differentiable=True)
            h = 1.0 / self.steps
            cost = -self.reward_multiplier * self.terminal_reward(traj.xs[-1])
            for k in range(self.steps):
                if bool(traj.noisy[k]):
                    t = traj.ts[k].expand(batch)
                    cost = cost + 0.5 * h * self.control(traj.xs[k], t).pow(2).sum(1)
            return cost, info
        traj = self.rollout(batch, generator=generator) if trajectory is None else trajectory
        info["reward"] = float(self.terminal_reward(traj.xs[-1]).mean())
        if name == "adjoint_matching":
            a = self.lean_adjoint(traj)
            ks = self._selected_steps(generator)
            u = self._controls(traj, ks)
            sig = self.schedule.sigma(traj.ts[ks]).reshape(-1, 1, 1)
            per = (u + sig * a[ks]).pow(2).sum(2)  # (|S|, B)
            if self.loss_clip is not None:
                per = per.clamp(max=self.loss_clip)
            return per.sum(0), info
        y, yb = self._log_rnd(traj)
        if name == "log_variance":
            return (y - y.mean()).pow(2) * batch / (batch - 1), info
        w = torch.softmax(yb, 0) * batch
        info["ess"] = float(batch**2 / w.pow(2).sum())
        return w * y, info


def finetune(
    problem: SOCProblem,
    loss_name: str,
    *,
    iterations: int = 300,
    batch: int = 128,
    lr: float | None = None,
    grad_clip: float = 1.0,
    seed: int = 0,
    lr_schedule: str = "constant",
    device: str = "cpu",
    callback: Callable[[int, float, dict], None] | None = None,
) -> list[float]:
    """Fit the fine-tuned velocity with loss ``loss_name`` (mean over the batch of the per-sample losses) through
    the shared Trainer (AdamW without weight decay, grad-norm clip, ``lr_schedule`` constant | cosine | linear;
    no EMA). Returns the loss history; ``callback(iteration, loss, logs)`` is called after every step.
    ``lr=None`` takes the measured per-loss default ``SOC_DEFAULT_LR[loss_name]`` (docs/steering.md)."""
    check_positive("iterations", iterations, integer=True)
    from agm.methods.steering.fitting import SOCFineTuning, _dummy_batches, fit, train_config

    cb = None
    if callback is not None:
        cb = lambda step, rec: callback(step - 1, float(rec["loss"]), rec)  # noqa: E731
    lr = SOC_DEFAULT_LR[loss_name] if lr is None else lr
    cfg = train_config(steps=iterations, batch_size=batch, lr=lr, grad_clip=grad_clip or 0.0, schedule=lr_schedule, device=device)
    _, records = fit(SOCFineTuning(problem, loss_name), _dummy_batches(batch), cfg, seed=seed, callback=cb)
    hist = [float(r["loss"]) for r in records]
    return hist


def gradient_variance(problem: SOCProblem, loss_name: str, *, batch: int = 64, n_batches: int = 16, seed: int = 0) -> dict[str, float]:
    """Variance of the stochastic gradient of ``loss_name`` at the current parameters (TAX's criterion):
    g_j = grad_theta mean(loss on batch j), j = 1..M independent batches;
    trace_cov = sum_p Var_j(g_j[p]) (unbiased), mean_sq_norm = |mean_j g_j|^2, relative = trace_cov / mean_sq_norm.
    The relative value is comparable across losses whose expected gradients differ by a scale."""
    g = torch.Generator().manual_seed(seed)
    params = [p for p in problem.ft.parameters() if p.requires_grad]
    grads = []
    for _ in range(n_batches):
        per, _ = problem.loss(loss_name, batch, generator=g)
        gs = torch.autograd.grad(per.mean(), params, allow_unused=True)
        grads.append(torch.cat([(x if x is not None else torch.zeros_like(p)).reshape(-1) for x, p in zip(gs, params)]))
    gm = torch.stack(grads)
    tr = float(gm.var(0, unbiased=True).sum())
    ms = float(gm.mean(0).pow(2).sum())
    return {"trace_cov": tr, "mean_sq_norm": ms, "relative": tr / max(ms, 1e-30)}


def make_problem(base: nn.Module, reward: Reward, dim: int, **kw) -> SOCProblem:
    """SOCProblem with ft = a trainable deep copy of base (arXiv 2409.08861: init = copy of v_base)."""
    ft = copy.deepcopy(base)
    for p in ft.parameters():
        p.requires_grad_(True)
    return SOCProblem(base=base, ft=ft, reward=reward, dim=dim, **kw)
