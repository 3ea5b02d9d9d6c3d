"""AGM: importance weights on the per-sample drift loss from a learned potential V_phi.

Our interpretation of Action-Inspired Generative Models (Pal & A., arXiv 2605.14631); the paper's
method section is not available, so this follows agm-digest.md sections 3-4 and every open choice is
a config option.

Weights (digest section 3). Unnormalised a_i = exp(-s V_phi(x_{t_i}, t_i) / tau), sign s in {+1
('down'), -1 ('up')}, temperature tau > 0. Self-normalised and stopped:

    w_i = sg( B a_i / sum_j a_j )          (batch mean 1; 'batch' normalisation)

or normalised within K equal bins of t ('time_bins': the weights re-rank samples at a given time
instead of re-weighting times). Then clipped to [w_min, w_max] and renormalised to mean 1 (within
the same groups). Drift loss L_f(theta) = (1/B) sum_i w_i l_i(theta).

Potential objectives (digest section 4), all with l stopped so no gradient reaches theta:
  nll      (default) L_V = mean_i [ sg(l_i) exp(-V_i) + V_i ]   minimiser V* = log E[l | x_t, t]
  regress  L_V = mean_i ( V_i - log sg(l_i) )^2                 minimiser V* = E[log l | x_t, t]
  kinetic  L_V = mean_i ( V_i - 1/2 ||u_i||^2 / d )^2          the bridge's own kinetic action density
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from agm.errors import ConfigError, check_choice

POTENTIAL_OBJECTIVES = ("nll", "regress", "kinetic")
SIGNS = {"down": 1.0, "up": -1.0}
NORMALISATIONS = ("batch", "time_bins")


def _group_normalise(a: Tensor, groups: Tensor | None) -> Tensor:
    """a_i / mean(a over i's group); groups=None means one group (the batch)."""
    if groups is None:
        return a / a.mean()
    n_groups = int(groups.max().item()) + 1
    sums = torch.zeros(n_groups, dtype=a.dtype, device=a.device).index_add_(0, groups, a)
    counts = torch.zeros(n_groups, dtype=a.dtype, device=a.device).index_add_(0, groups, torch.ones_like(a))
    return a / (sums / counts.clamp_min(1))[groups]


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
    """w = sg(normalised exp(-s V / tau)), clipped and renormalised; returns shape (B,), no grad.

    Computed in log space (softmax) so large |V| / tau cannot overflow.
    """
    check_choice("potential.sign", sign, SIGNS)
    check_choice("potential.normalise", normalise, NORMALISATIONS)
    if temperature <= 0:
        raise ConfigError(f"potential.temperature={temperature!r} must be > 0")
    v = v.detach().float()
    logits = -SIGNS[sign] * v / temperature
    if normalise == "batch":
        groups = None
    else:
        if t is None:
            raise ValueError("normalise='time_bins' needs the times t")
        groups = torch.clamp((t.detach() * time_bins).long(), 0, time_bins - 1)
    # a_i / mean_group(a): subtract the group max in log space first for stability
    if groups is None:
        a = torch.exp(logits - logits.max())
    else:
        gmax = torch.full((time_bins,), -torch.inf, device=v.device).scatter_reduce(0, groups, logits, reduce="amax")
        a = torch.exp(logits - gmax[groups])
    w = _group_normalise(a, groups)
    if clip is not None:
        lo, hi = clip
        if not (0 <= lo <= 1 <= hi):
            raise ConfigError(f"potential.clip={clip!r} must satisfy 0 <= min <= 1 <= max")
        w = _group_normalise(w.clamp(lo, hi), groups)
    return w


def effective_sample_size(w: Tensor) -> Tensor:
    """(sum w)^2 / sum w^2 divided by B, as a 0-d tensor: 1 for uniform weights, -> 1/B for one dominant weight."""
    return w.sum() ** 2 / (w.pow(2).sum() * w.numel())


def potential_loss(v: Tensor, ell: Tensor, target_u: Tensor | None = None, objective: str = "nll") -> Tensor:
    """Per-sample loss of V_phi (digest section 4); the residuals ``ell`` and ``target_u`` are stopped."""
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
    """All of AGM's weighting choices in one object (agm-digest.md section 4); defaults are the digest's."""

    objective: str = "nll"
    sign: str = "down"
    normalise: str = "batch"
    temperature: float = 1.0
    time_bins: int = 8
    clip: tuple[float, float] | None = (0.1, 10.0)
    warmup_steps: int = 100

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
        with torch.no_grad():
            vc, tc = v.detach() - v.detach().mean(), t - t.mean()
            corr = (vc * tc).sum() / (vc.norm() * tc.norm()).clamp_min(1e-12)
            logs = {"ess": effective_sample_size(w), "w_max": w.max(), "w_min": w.min(), "v_t_corr": corr}
        return drift_loss, pot_loss, logs
