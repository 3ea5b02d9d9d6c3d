"""AGM: importance weights on the per-sample drift loss from a learned potential V_phi.

Our interpretation of Action-Inspired Generative Models (Pal & A., arXiv 2605.14631); the paper's
method section is not available, so this is our interpretation (docs/agm.md) and every open choice is
a config option.

Weights (docs/agm.md, "The equations"). Unnormalised a_i = exp(-s V_phi(x_{t_i}, t_i) / tau), sign s in {+1
('down'), -1 ('up')}, temperature tau > 0. Self-normalised and stopped:

    w_i = sg( B a_i / sum_j a_j )          (batch mean 1; 'batch' normalisation)

or normalised within K equal bins of t ('time_bins': the weights re-rank samples at a given time
instead of re-weighting times). With clip = [lo, hi] the weights are w_i = min(max(c a_i, lo), hi) with
c chosen so that the mean is exactly 1 (solved exactly): the bound a user sets is the bound they get. Drift loss L_f(theta) = (1/B) sum_i w_i l_i(theta).

The controls and the path-level variant of docs/agm.md use the same weights, logs and stop-gradients:
  TimeLogVariance     u(t) for the learned time-only weighting (EDM2's uncertainty weighting): V = u(t)
  FixedTimeWeighting  a fixed lambda(t) (inverse target variance along the bridge, or (1 - t)^p)
  PairCoupling        ours, beyond the paper: B x B pair weights exp(-action(x0_i, x1_j) / tau) made
                      doubly stochastic by Sinkhorn; the pairs are resampled from it (endpoint marginals kept)

Potential objectives (docs/agm.md), all with l stopped so no gradient reaches theta:
  nll      (default) L_V = mean_i [ sg(l_i) exp(-V_i) + V_i ]   minimiser V* = log E[l | x_t, t]
  regress  L_V = mean_i ( V_i - log sg(l_i) )^2                 minimiser V* = E[log l | x_t, t]
  kinetic  L_V = mean_i ( V_i - 1/2 ||u_i||^2 / d )^2          the bridge's own kinetic action density
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from agm.metrics.ess import effective_sample_size  # the library's one ESS (re-exported)
from agm.errors import ConfigError, check_choice

POTENTIAL_OBJECTIVES = ("nll", "regress", "kinetic")
SIGNS = {"down": 1.0, "up": -1.0}
NORMALISATIONS = ("batch", "time_bins")
SCHEDULES = ("inverse_variance", "power")


def _group_normalise(a: Tensor, groups: Tensor | None) -> Tensor:
    """a_i / mean(a over i's group); groups=None means one group (the batch)."""
    if groups is None:
        return a / a.mean()
    n_groups = int(groups.max().item()) + 1
    sums = torch.zeros(n_groups, dtype=a.dtype, device=a.device).index_add_(0, groups, a)
    counts = torch.zeros(n_groups, dtype=a.dtype, device=a.device).index_add_(0, groups, torch.ones_like(a))
    return a / (sums / counts.clamp_min(1))[groups]


def _groups_of(t: Tensor | None, normalise: str, time_bins: int, n: int, device) -> tuple[Tensor, int]:
    """Group index of every sample (all 0 for 'batch'; the bin of t for 'time_bins') and the number of groups."""
    if normalise == "batch":
        return torch.zeros(n, dtype=torch.long, device=device), 1
    if t is None:
        raise ValueError("normalise='time_bins' needs the times t")
    return torch.clamp((t.detach() * time_bins).long(), 0, time_bins - 1), time_bins


def _group_lse(z: Tensor, groups: Tensor, n_groups: int, mask: Tensor | None = None) -> Tensor:
    """log sum_{i in group g (and mask)} exp(z_i) for every group g (-inf for an empty set); stable."""
    if mask is not None:
        z = torch.where(mask, z, torch.full_like(z, -torch.inf))
    gmax = torch.full((n_groups,), -torch.inf, dtype=z.dtype, device=z.device).scatter_reduce(0, groups, z, reduce="amax")
    shift = torch.where(torch.isfinite(gmax), gmax, torch.zeros_like(gmax))
    sums = torch.zeros(n_groups, dtype=z.dtype, device=z.device).index_add_(0, groups, torch.exp(z - shift[groups]))
    return torch.log(sums) + shift


def clipped_normalise(logits: Tensor, lo: float, hi: float, groups: Tensor | None = None, n_groups: int = 1,
                      chunk: int = 1024) -> Tensor:
    """Weights w_i = min(max(c_g exp(z_i), lo), hi) with c_g chosen so that every group has mean exactly 1.

    The bound a user sets is the bound they get, with mean 1 and the ratios of the unclipped a_i kept
    (docs/agm.md, "Clipping"; iterating "clip, renormalise" instead ends at another point): g(k) = mean_i clamp(exp(k + z_i), lo, hi) is continuous and non-decreasing
    in k = log c, from lo to hi, so g(k) = 1 has a solution whenever lo <= 1 <= hi. The breakpoints of g
    are k = log lo - z_i and k = log hi - z_i; g is evaluated at all of them (a (2B x B) comparison, in
    chunks of ``chunk`` rows), the segment that brackets 1 fixes which samples are clipped low (L), high (H)
    or free (F), and on it  exp(k) = (n - lo |L| - hi |H|) / sum_F exp(z_i)  exactly. Everything is in
    float64 and in log space, so a logit spread of 1e4 neither overflows nor underflows, and nothing
    synchronises with the host. Returns float64 weights; the bounds hold exactly, the mean to rounding.
    """
    z = logits.detach().double()
    n = z.shape[0]
    if groups is None:
        groups = torch.zeros(n, dtype=torch.long, device=z.device)
        n_groups = 1
    counts = torch.zeros(n_groups, dtype=z.dtype, device=z.device).index_add_(0, groups, torch.ones_like(z))
    if z.device.type == "cpu":  # fast path where a host check is free: plain normalisation already within [lo, hi]
        w0 = torch.exp(z - _group_lse(z, groups, n_groups)[groups]) * counts[groups]
        if bool(((w0 >= lo) & (w0 <= hi)).all()):
            return w0
    log_lo = math.log(lo) if lo > 0 else -math.inf  # python floats: no host-to-device copy
    log_hi = math.log(hi)
    # breakpoints: each belongs to the group of the sample that defines it
    bk = torch.cat([log_lo - z, log_hi - z])
    bg = torch.cat([groups, groups])
    finite = torch.isfinite(bk)  # lo = 0 gives -inf breakpoints: clipping at 0 never binds
    gvals = []
    for start in range(0, bk.shape[0], chunk):
        kb = bk[start:start + chunk]
        w = torch.clamp(torch.exp(kb[:, None] + z[None, :]), lo, hi)
        if n_groups > 1:
            w = w * (bg[start:start + chunk, None] == groups[None, :])
        gvals.append(w.sum(1) / counts[bg[start:start + chunk]])
    gb = torch.cat(gvals)
    below = finite & (gb <= 1.0)
    above = finite & (gb > 1.0)
    neg_inf = torch.full((n_groups,), -torch.inf, dtype=z.dtype, device=z.device)
    k_left = neg_inf.clone().scatter_reduce(0, bg, torch.where(below, bk, -torch.inf), reduce="amax")
    k_right = (-neg_inf).scatter_reduce(0, bg, torch.where(above, bk, torch.inf), reduce="amin")
    # a point strictly inside the bracketing segment fixes the clipped sets
    k_mid = torch.where(torch.isfinite(k_left) & torch.isfinite(k_right), 0.5 * (k_left + k_right),
                        torch.where(torch.isfinite(k_left), k_left + 1.0, k_right - 1.0))
    km = k_mid[groups] + z
    high = km >= log_hi
    low = km <= log_lo
    free = ~(high | low)
    n_high = torch.zeros(n_groups, dtype=z.dtype, device=z.device).index_add_(0, groups, high.to(z.dtype))
    n_low = torch.zeros(n_groups, dtype=z.dtype, device=z.device).index_add_(0, groups, low.to(z.dtype))
    rest = counts - lo * n_low - hi * n_high
    k_star = torch.log(rest.clamp_min(0)) - _group_lse(z, groups, n_groups, free)
    # no free sample (g is flat and equal to 1 on the segment): any point of it, e.g. its left end
    k_star = torch.where(torch.isfinite(k_star), k_star, torch.where(torch.isfinite(k_left), k_left, k_mid))
    return torch.clamp(torch.exp(k_star[groups] + z), lo, hi)


def importance_weights(
    v: Tensor,
    t: Tensor | None = None,
    *,
    sign: str = "down",
    temperature: float = 1.0,
    normalise: str = "batch",
    time_bins: int = 8,
    clip: tuple[float, float] | None = (0.1, 10.0),
) -> Tensor:
    """w = sg(normalised exp(-s V / tau)); with ``clip`` = (lo, hi), w_i = min(max(c exp(-s V_i / tau), lo), hi)
    with c chosen per group so that the mean is exactly 1 (:func:`clipped_normalise`). Shape (B,), no grad.

    Computed in log space so large |V| / tau cannot overflow.
    """
    check_choice("potential.sign", sign, SIGNS)
    check_choice("potential.normalise", normalise, NORMALISATIONS)
    if temperature <= 0:
        raise ConfigError(f"potential.temperature={temperature!r} must be > 0")
    v = v.detach().float()
    logits = -SIGNS[sign] * v / temperature
    if clip is not None:
        lo, hi = clip
        if not (0 <= lo <= 1 <= hi):
            raise ConfigError(f"potential.clip={clip!r} must satisfy 0 <= min <= 1 <= max")
        if normalise == "batch" and v.device.type == "cpu":
            # fast path (CPU, where a host check is free): plain normalisation B a_i / sum_j a_j (one softmax in
            # float64) when it already lies within [lo, hi]; clipped_normalise would return the same weights
            # (to rounding) after about 30 small operations. Otherwise the exact clipped solve below.
            w0 = torch.softmax(logits.double(), dim=0) * v.shape[0]
            w_lo, w_hi = torch.aminmax(w0)
            if lo <= float(w_lo) and float(w_hi) <= hi:
                return w0.to(v.dtype)  # in [lo, hi] in float64, so also after rounding to float32
        groups, n_groups = _groups_of(t, normalise, time_bins, v.shape[0], v.device)
        w = clipped_normalise(logits, float(lo), float(hi), groups, n_groups)
        return w.to(v.dtype).clamp(lo, hi)
    if normalise == "batch":  # a_i / mean(a), the max subtracted first for stability (one group: no scatter)
        a = torch.exp(logits - logits.max())
        return a / a.mean()
    groups, n_groups = _groups_of(t, normalise, time_bins, v.shape[0], v.device)
    # a_i / mean_group(a): subtract the group max in log space first for stability
    gmax = torch.full((n_groups,), -torch.inf, device=v.device).scatter_reduce(0, groups, logits, reduce="amax")
    a = torch.exp(logits - gmax[groups])
    return _group_normalise(a, None if normalise == "batch" else groups)


def potential_loss(v: Tensor, ell: Tensor, target_u: Tensor | None = None, objective: str = "nll") -> Tensor:
    """Per-sample loss of V_phi (docs/agm.md); the residuals ``ell`` and ``target_u`` are stopped."""
    check_choice("potential.objective", objective, POTENTIAL_OBJECTIVES)
    ell = ell.detach()
    if objective == "nll":
        return ell * torch.exp(-v) + v
    if objective == "regress":
        return (v - torch.log(ell.clamp_min(1e-12))).pow(2)
    if target_u is None:
        raise ValueError("objective='kinetic' needs the bridge target u_t")
    kinetic = 0.5 * target_u.detach().pow(2).flatten(1).mean(dim=1)
    return (v - kinetic).pow(2)


@dataclass
class PotentialWeighting:
    """All of AGM's weighting choices in one object (docs/agm.md, "Options")."""

    objective: str = "nll"
    sign: str = "down"
    normalise: str = "batch"
    temperature: float = 1.0
    time_bins: int = 8
    clip: tuple[float, float] | None = (0.1, 10.0)
    warmup_steps: int = 100

    needs_potential = True

    def __post_init__(self) -> None:
        check_choice("potential.objective", self.objective, POTENTIAL_OBJECTIVES)
        check_choice("potential.sign", self.sign, SIGNS)
        check_choice("potential.normalise", self.normalise, NORMALISATIONS)
        if self.temperature <= 0:
            raise ConfigError(f"potential.temperature={self.temperature!r} must be > 0")
        if not isinstance(self.time_bins, int) or self.time_bins < 1:
            raise ConfigError(f"potential.time_bins={self.time_bins!r} must be an integer >= 1")
        if self.warmup_steps < 0:
            raise ConfigError(f"potential.warmup_steps={self.warmup_steps!r} must be >= 0")
        if self.clip is not None:
            self.clip = (float(self.clip[0]), float(self.clip[1]))

    def weights(self, v: Tensor, t: Tensor, step: int) -> Tensor:
        """Importance weights for this step (all ones during warm-up)."""
        if step < self.warmup_steps:
            return torch.ones_like(v.detach())
        return importance_weights(
            v, t, sign=self.sign, temperature=self.temperature, normalise=self.normalise, time_bins=self.time_bins, clip=self.clip
        )

    def losses(self, v: Tensor, ell: Tensor, t: Tensor, target_u: Tensor, step: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """(drift loss L_f, potential loss L_V, logs). L_f = mean(w * l) with w stopped; L_V per the objective.

        Logs are detached 0-d tensors (ESS/B, max and min weight, corr(V, t)); the trainer converts them to
        floats only on logging steps, so no device synchronisation happens on the others.
        """
        w = self.weights(v, t, step)
        drift_loss = (w * ell).mean()
        pot_loss = potential_loss(v, ell, target_u, self.objective).mean()
        return drift_loss, pot_loss, weight_logs(w, v, t)


def weight_logs(w: Tensor, score: Tensor, t: Tensor) -> dict[str, Tensor]:
    """The logs every weighted arm writes: ESS/B, max and min weight, corr(score, t) (detached 0-d tensors)."""
    with torch.no_grad():
        # corr = sum(vc tc) / (|vc| |tc|) with vc, tc centred: one 2 x 2 Gram matrix of the centred rows (few ops:
        # these logs are computed every step, so their small-op count is part of AGM's step time on the CPU)
        a = torch.stack([score.detach().float(), t.detach().float()])
        c = a - a.mean(dim=1, keepdim=True)
        gram = c @ c.T
        corr = gram[0, 1] / (gram[0, 0] * gram[1, 1]).sqrt().clamp_min(1e-12)
        w_min, w_max = torch.aminmax(w.detach())
        return {"ess": effective_sample_size(w, normalised=True), "w_max": w_max, "w_min": w_min, "v_t_corr": corr}


class TimeLogVariance(nn.Module):
    """u(t), a learned log-variance per time: the control "learned time-only weighting" (docs/agm.md).

    EDM2's uncertainty weighting (Karras et al. 2024, "Analyzing and improving the training dynamics of
    diffusion models", eq. 21): u(t) = w^T [cos(pi k t), sin(pi k t)]_{k=1..K} + b, trained by the same
    heteroscedastic NLL as AGM's default, sg(l) e^{-u(t)} + u(t), whose minimiser is u*(t) = log E[l | t].
    It takes (x, t) like V_phi and ignores x, so it plugs into :class:`PotentialWeighting` unchanged (same
    normalisation, clipping, warm-up, stop-gradients and logs). The head starts at zero (uniform weights).
    """

    def __init__(self, features: int = 16) -> None:
        super().__init__()
        if not isinstance(features, int) or features < 1:
            raise ConfigError(f"time_weight.features={features!r} must be an integer >= 1")
        self.features = features
        self.head = nn.Linear(2 * features, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        dtype = self.head.weight.dtype
        k = torch.arange(1, self.features + 1, device=t.device, dtype=dtype)
        ang = math.pi * t.to(dtype)[:, None] * k[None, :]
        return self.head(torch.cat([torch.cos(ang), torch.sin(ang)], dim=1)).squeeze(-1)


@dataclass
class FixedTimeWeighting:
    """The control "fixed lambda(t)" (docs/agm.md): no network; weights lambda(t) normalised like AGM's.

    schedule='inverse_variance': lambda(t) = 1 / (offset + sigma^2 t / (1 - t)), the inverse of the
        conditional variance sigma^2 t / (1 - t) of the bridge target u_t given the endpoints, floored by
        ``offset`` (a stand-in for the endpoint part Var(x_1 - x_0 | x_t), which the bridge does not know);
    schedule='power': lambda(t) = (1 - t)^power (power = 0 is drift-only).
    The weights are importance_weights(-log lambda(t)) with the same normalisation and clip as AGM.
    """

    schedule: str = "inverse_variance"
    sigma: float = 0.5
    offset: float = 1.0
    power: float = 1.0
    normalise: str = "batch"
    time_bins: int = 8
    clip: tuple[float, float] | None = (0.1, 10.0)

    needs_potential = False

    def __post_init__(self) -> None:
        check_choice("fixed_weight.schedule", self.schedule, SCHEDULES)
        check_choice("potential.normalise", self.normalise, NORMALISATIONS)
        if not self.offset > 0:
            raise ConfigError(f"fixed_weight.offset={self.offset!r} must be > 0")
        if not self.power >= 0:
            raise ConfigError(f"fixed_weight.power={self.power!r} must be >= 0")
        if self.clip is not None:
            self.clip = (float(self.clip[0]), float(self.clip[1]))

    def log_lambda(self, t: Tensor) -> Tensor:
        t = t.detach().float()
        one_minus_t = (1 - t).clamp_min(1e-6)
        if self.schedule == "inverse_variance":
            return -torch.log(self.offset + self.sigma**2 * t / one_minus_t)
        return self.power * torch.log(one_minus_t)

    def weights(self, v: Tensor | None, t: Tensor, step: int) -> Tensor:
        return importance_weights(-self.log_lambda(t), t, normalise=self.normalise, time_bins=self.time_bins, clip=self.clip)

    def losses(self, v: Tensor | None, ell: Tensor, t: Tensor, target_u: Tensor, step: int) -> tuple[Tensor, None, dict[str, Tensor]]:
        """(drift loss mean(w l), None: nothing else is trained, logs as AGM's with score = -log lambda(t))."""
        w = self.weights(v, t, step)
        return (w * ell).mean(), None, weight_logs(w, -self.log_lambda(t), t)


@dataclass
class PairCoupling:
    """Path-level variant (ours, beyond arXiv 2605.14631; docs/agm.md "Path-level AGM"): reweight the pairs.

    A weight on the pair (x0_i, x1_j) through its bridge's kinetic action c_ij = ||x1_j - x0_i||^2 / (2 d)
    gives a B x B matrix K_ij = exp(-c_ij / tau). ``iters`` Sinkhorn iterations (in log space) scale it to
    P with row sums exactly 1/B and column sums 1/B up to the reported ``pair_col_err``; every x0_i then
    draws its partner j ~ B P_i. (a doubly stochastic matrix, as minibatch-OT couplings do). x0's marginal is
    kept exactly and x1's in expectation, while the coupling, and so the fixed point E[u | x_t, t], changes.
    tau = sigma^2 / d is the Schrodinger-bridge static coupling exp(-||x1 - x0||^2 / (2 sigma^2)); tau -> inf
    is the independent coupling.
    """

    temperature: float
    iters: int = 20

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise ConfigError(f"coupling.temperature={self.temperature!r} must be > 0")
        if not isinstance(self.iters, int) or self.iters < 1:
            raise ConfigError(f"coupling.iters={self.iters!r} must be an integer >= 1")

    @staticmethod
    def cost(x0: Tensor, x1: Tensor) -> Tensor:
        """c_ij = ||x1_j - x0_i||^2 / (2 d), shape (B, B), float32."""
        a, b = x0.detach().flatten(1).float(), x1.detach().flatten(1).float()
        sq = a.pow(2).sum(1)[:, None] + b.pow(2).sum(1)[None, :] - 2 * a @ b.T
        return 0.5 * sq.clamp_min(0) / a.shape[1]

    def log_plan(self, x0: Tensor, x1: Tensor, cost: Tensor | None = None) -> Tensor:
        """log P, P = diag(e^f) K diag(e^g) with rows summing to 1/B (exactly) and columns to 1/B (approximately)."""
        with torch.autocast(device_type=x0.device.type, enabled=False):
            log_k = -(self.cost(x0, x1) if cost is None else cost) / self.temperature
            n = log_k.shape[0]
            log_m = -math.log(n)
            f = torch.zeros(n, device=log_k.device)
            g = torch.zeros(n, device=log_k.device)
            for _ in range(self.iters):
                g = log_m - torch.logsumexp(log_k + f[:, None], dim=0)
                f = log_m - torch.logsumexp(log_k + g[None, :], dim=1)
            return f[:, None] + log_k + g[None, :]

    def resample(self, x0: Tensor, x1: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """x1 reordered by the coupling (partner j_i ~ B P_i. for each x0_i) and the coupling's logs."""
        with torch.no_grad(), torch.autocast(device_type=x0.device.type, enabled=False):
            cost = self.cost(x0, x1)
            log_p = self.log_plan(x0, x1, cost)
            n = log_p.shape[0]
            probs = torch.softmax(log_p, dim=1)  # = B P_i. (rows of P sum to 1/B)
            idx = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            col_err = (torch.exp(torch.logsumexp(log_p, dim=0) + math.log(n)) - 1).abs().max()
            logs = {"pair_cost": cost[torch.arange(n, device=cost.device), idx].mean(), "pair_cost_independent": cost.diagonal().mean(),
                    "pair_col_err": col_err}
        return x1[idx], logs
