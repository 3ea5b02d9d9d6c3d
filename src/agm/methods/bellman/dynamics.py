"""Bellman Diffusion Dynamics: the sampling SDE driven by a gradient field g ~ grad p and a scalar field f ~ p.

Bellman Diffusion (Li et al., arXiv 2410.01796) Eqs. (4), (12), (13) and Algorithm 2; constants as
reconstructed and verified in docs/bellman.md (the paper's formula was lost):

    dx_t = grad p(x_t) dt + sqrt(p(x_t)) dW_t          (exact fields;   p is the stationary law)
    dx_t = g_phi(x_t) dt + sqrt(f_theta(x_t)) dW_t     (learned fields, Eq. 13)

NOT sqrt(2 p): Fokker-Planck with D = b^2/2 = p/2 has zero flux at p iff drift = grad D + D grad log p
= grad p. Euler-Maruyama discretisation (Algorithm 2, docs/bellman.md):

    x_{k+1} = x_k + eta g(x_k) + sqrt(eta * pos(f(x_k))) xi_k,   xi_k ~ N(0, I)

Safety where f is near zero or negative (our choice, docs/bellman.md): ``positivity`` maps f
to a non-negative mobility before the square root ('clamp': max(f, 0), default; 'softplus';
'abs'), so no square root of a negative number and no division by f ever occurs (the sampler
never forms g / f). Where f <= 0 the particle gets only the drift g; ``drift_clip`` optionally
bounds ||g|| per step against off-support extrapolation of a network. After each call
``last_stats`` holds the fraction of particles with f < 1e-3 (frozen region) at the end.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from agm.errors import ConfigError, check_choice, check_positive
from agm.samplers.euler_maruyama import EulerMaruyama
from agm.tensors import expand_time

POSITIVITY = ("clamp", "softplus", "abs")
XField = Callable[[Tensor], Tensor]


def _positive(f: Tensor, how: str) -> Tensor:
    if how == "clamp":
        return f.clamp_min(0.0)
    if how == "softplus":
        return torch.nn.functional.softplus(f)
    return f.abs()


class BellmanDynamics:
    """Sampler of the Bellman Diffusion Dynamics dx = g(x) dt + sqrt(f(x)) dW (Eq. 13; docs/bellman.md).

    Args:
        steps: number of Euler-Maruyama steps K (our default 2000).
        step_size: eta. If None, eta = rel_step / max f(x0) over the initial batch (docs/bellman.md:
            the effective Langevin step is eta f / 2; default eta = 0.05 / max f).
        rel_step: used when step_size is None.
        positivity: 'clamp' | 'softplus' | 'abs', how f is made non-negative inside the square root.
        noise_scale: multiplies sqrt(f); 1.0 is the paper's dynamics (sqrt(2) would break stationarity;
            kept only for the ablation test).
        drift_clip: if set, the drift g is rescaled so that ||g|| <= drift_clip per particle.

    ``sample(g, x0, density=f)`` follows the shared sampler interface (a field and a start point);
    g and f are time-independent callables of x: g(x) -> (B, d), f(x) -> (B,) or (B, 1).
    """

    def __init__(
        self,
        steps: int = 2000,
        step_size: float | None = None,
        rel_step: float = 0.05,
        positivity: str = "clamp",
        noise_scale: float = 1.0,
        drift_clip: float | None = None,
    ) -> None:
        check_positive("sampler.steps", steps, integer=True)
        if step_size is not None:
            check_positive("sampler.step_size", step_size)
        check_positive("sampler.rel_step", rel_step)
        check_choice("sampler.positivity", positivity, POSITIVITY)
        check_positive("sampler.noise_scale", noise_scale)
        if drift_clip is not None:
            check_positive("sampler.drift_clip", drift_clip)
        self.steps, self.step_size, self.rel_step = steps, step_size, rel_step
        self.positivity, self.noise_scale, self.drift_clip = positivity, noise_scale, drift_clip
        self.last_stats: dict = {}

    def resolve_step(self, density: XField, x0: Tensor) -> float:
        """eta: ``step_size`` or rel_step / max f(x0)."""
        if self.step_size is not None:
            return float(self.step_size)
        with torch.no_grad():
            fmax = float(_positive(density(x0).reshape(x0.shape[0]), self.positivity).max())
        if not fmax > 0:
            raise ConfigError("sampler.step_size=None needs max f(x0) > 0 to set eta = rel_step / max f; give step_size explicitly")
        return self.rel_step / fmax

    @torch.no_grad()
    def sample(
        self,
        field: XField,
        x0: Tensor,
        density: XField | None = None,
        *,
        generator: torch.Generator | None = None,
        return_trajectory: bool = False,
    ) -> Tensor:
        """Integrate dx = g dt + sqrt(pos(f)) dW for ``steps`` steps of size eta from x0 (Algorithm 2)."""
        if density is None:
            raise ConfigError("BellmanDynamics.sample needs density=f (the scalar field); got None")
        eta = self.resolve_step(density, x0)
        B = x0.shape[0]

        def drift(x: Tensor, t: Tensor) -> Tensor:
            g = field(x)
            if self.drift_clip is not None:
                n = g.flatten(1).norm(dim=1).clamp_min(1e-12)
                g = g * expand_time((self.drift_clip / n).clamp(max=1.0), g)
            return g

        def diffusion(x: Tensor, t: Tensor) -> Tensor:
            f = _positive(density(x).reshape(B), self.positivity)
            return expand_time(self.noise_scale * f.sqrt(), x)

        em = EulerMaruyama(steps=self.steps, t0=0.0, t1=eta * self.steps, noise_last_step=True)
        out = em.sample(drift, x0, diffusion, generator=generator, return_trajectory=return_trajectory)
        last = out[-1] if return_trajectory else out
        fl = density(last).reshape(B)
        self.last_stats = {"eta": eta, "frozen_fraction": float((fl < 1e-3).float().mean()), "min_f": float(fl.min())}
        return out

    def sample_annealed(
        self,
        field: Callable[[Tensor, float], Tensor],
        x0: Tensor,
        density: Callable[[Tensor, float], Tensor],
        levels: list | tuple,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Annealed dynamics (ours; docs/bellman.md): the fields of kernel variance levels[0], then levels[1], ...
        (largest first, as annealed Langevin), ``steps`` split evenly between the levels (the remainder to the
        last), eta re-resolved at the start of each level. ``field(x, eps)`` and ``density(x, eps)`` are the
        eps-conditioned fields. Every level's exact pair (h_eps, grad(p h_eps) / (2 p)) has p as its stationary
        law; what changes with eps is the mobility h_eps / 2 (large eps: broad, no frozen tails)."""
        if len(levels) == 0:
            raise ConfigError("sample_annealed needs at least one kernel variance level")
        n = len(levels)
        if self.steps < n:
            raise ConfigError(f"sampler.steps={self.steps} is smaller than the number of levels {n}")
        base, rest = divmod(self.steps, n)
        x, stats = x0, []
        for i, eps in enumerate(levels):
            check_positive("sample.eps_schedule", eps)
            stage = BellmanDynamics(steps=base + (rest if i == n - 1 else 0), step_size=self.step_size, rel_step=self.rel_step,
                                    positivity=self.positivity, noise_scale=self.noise_scale, drift_clip=self.drift_clip)
            x = stage.sample(lambda u, e=eps: field(u, e), x, lambda u, e=eps: density(u, e), generator=generator)
            stats.append({"eps": float(eps), **stage.last_stats})
        self.last_stats = {**stats[-1], "levels": stats}
        return x
