"""Generalised flow-map objectives on Riemannian manifolds (Davis, Albergo, Boffi, Bronstein, Bose, ICLR 2026,
arXiv 2510.21608; equations (F2)-(F7) of docs/flowmaps.md).

With I_s the geodesic interpolant (``GeodesicPath``), ``sg`` = stop-gradient and every norm the metric
norm at the base point of the vector (here always X_{s,t}(I_s), after projection onto its tangent space):

    L_RFM  = E_t || v_{t,t}(I_t) - dI_t/dt ||_g^2                                               (F3)        
    G-LSD  = E_{s<t} || d/dt X_{s,t}(I_s) - sg[ v_{t,t}( X_{s,t}(I_s) ) ] ||_g^2                 (Lagrangian)
    G-ESD  = E_{s<t} || d/ds X_{s,t}(I_s) + sg[ dX_{s,t}|_{I_s} [ v_{s,s}(I_s) ] ] ||_g^2          (Eulerian)
    G-PSD  = E_{s<t} d_g( X_{s,t}(I_s), sg[ X_{u,t}( X_{s,u}(I_s) ) ] )^2,  u = (s + t)/2         (progressive)
    G-MF   = E_{s<t} d_g( X, sg[ exp_X((t - s) D) ] )^2 / (t - s)^2,  X = X_{s,t}(I_s),
             D = d/ds X_{s,t}(I_s) (total derivative along the conditional path)                 (MeanFlow, F9)
    L      = mean(L_RFM) + mean(L_SD)                                                            (F7)          

Time derivatives are forward-mode JVPs (``torch.func.jvp``) in ambient coordinates; the spatial JVP of
G-ESD is detached (no second-order terms), as the paper prescribes.

Choices the paper leaves open (our reconstruction; each is an option of :class:`FlowMapObjective`, see docs/flowmaps.md):
``diag_fraction`` (0.75; the share of the batch on the diagonal s = t), ``st_sampling`` ('scaled':
t ~ U[0,1], s = t U [X]; alternative 'sorted': (s, t) = sorted pair of uniforms), ``midpoint`` ('mid':
u = (s+t)/2 [R]; alternative 'uniform': u ~ U[s, t]). No time weighting.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from agm.errors import ConfigError, check_choice
from agm.manifolds.base import Manifold, jvp
from agm.methods.flowmaps.nets import FlowMap
from agm.paths.geodesic import GeodesicPath

METHODS = ("rfm", "lagrangian", "eulerian", "progressive", "meanflow")
ST_SAMPLING = ("scaled", "sorted")
MIDPOINTS = ("mid", "uniform")


def tangent_sqnorm(manifold: Manifold, x: Tensor, r: Tensor) -> Tensor:
    """||proj_{T_x M} r||_g^2, shape (B,): the metric norm of an ambient residual at x."""
    return manifold.sqnorm(x, manifold.proju(x, r))


def rfm_loss(flow_map: FlowMap, path: GeodesicPath, x0: Tensor, x1: Tensor, t: Tensor) -> Tensor:
    """Per-sample Riemannian flow matching loss ||v_{t,t}(I_t) - dI_t/dt||_g^2 (docs/flowmaps.md (F3))."""
    ps = path.sample(x0, x1, t)
    v = flow_map.velocity(t, t, ps.xt)
    return tangent_sqnorm(path.manifold, ps.xt, v - ps.target.detach())


def lagrangian_loss(flow_map: FlowMap, xs: Tensor, s: Tensor, t: Tensor) -> Tensor:
    """Per-sample G-LSD: ||d/dt X_{s,t}(x_s) - sg[v_{t,t}(sg X_{s,t}(x_s))]||_g^2 (docs/flowmaps.md (F4))."""
    xst, dxdt = jvp(lambda tt: flow_map(s, tt, xs), (t,), (torch.ones_like(t),))
    with torch.no_grad():
        xd = xst.detach()
        target = flow_map.velocity(t, t, xd)
    return tangent_sqnorm(flow_map.manifold, xd, dxdt - target)


def eulerian_loss(flow_map: FlowMap, xs: Tensor, s: Tensor, t: Tensor) -> Tensor:
    """Per-sample G-ESD: ||d/ds X_{s,t}(x_s) + sg[dX_{s,t}|_{x_s}[v_{s,s}(x_s)]]||_g^2 (docs/flowmaps.md (F5))."""
    xst, dxds = jvp(lambda ss: flow_map(ss, t, xs), (s,), (torch.ones_like(s),))
    with torch.no_grad():
        v = flow_map.velocity(s, s, xs)
        _, dx = jvp(lambda xx: flow_map(s, t, xx), (xs,), (v,))
    return tangent_sqnorm(flow_map.manifold, xst.detach(), dxds + dx)


def progressive_loss(flow_map: FlowMap, xs: Tensor, s: Tensor, t: Tensor, u: Tensor | None = None) -> Tensor:
    """Per-sample G-PSD: d_g(X_{s,t}(x_s), sg[X_{u,t}(X_{s,u}(x_s))])^2, u = (s+t)/2 by default (docs/flowmaps.md (F6))."""
    if u is None:
        u = 0.5 * (s + t)
    with torch.no_grad():
        teacher = flow_map(u, t, flow_map(s, u, xs))
    return flow_map.manifold.sqdist(flow_map(s, t, xs), teacher)


def meanflow_loss(flow_map: FlowMap, path: GeodesicPath, x0: Tensor, x1: Tensor, s: Tensor, t: Tensor,
                  norm_p: float = 0.0, norm_c: float = 1e-3) -> Tensor:
    """Per-sample Riemannian MeanFlow loss (G-MF; docs/flowmaps.md (F9); MeanFlow: Geng et al., arXiv 2505.13447, eq. 10).

    MeanFlow regresses the average velocity u(x_s, s, t) = (1/(t-s)) int_s^t v on the stop-gradient target
    u_tgt = v_s + (t - s) du/ds (total derivative along the conditional path, whose velocity v_s replaces the
    marginal one). Writing the map as X_{s,t} = x + (t - s) u, one has u - u_tgt = -D with
    D = d/ds X_{s,t}(I_s), so the MeanFlow loss is ||X - sg[X + (t - s) D]||^2 / (t - s)^2. Our Riemannian form
    (a reconstruction: the paper is Euclidean) replaces the sum by the exponential map:

        L = d_g( X_{s,t}(I_s), sg[ exp_X((t - s) D) ] )^2 / (t - s)^2,    D = d/ds X_{s,t}(I_s)  (one JVP in s)

    whose value is ||D||_g^2 and whose gradient, in R^d, is MeanFlow's. D is the JVP of s -> X_{s,t}(I_s) through
    both the start time and the start point I_s = exp_{x0}(s log_{x0} x1) (tangent (1, dI/ds)). ``norm_p`` > 0 applies
    MeanFlow's adaptive weight sg[1 / (L + norm_c)^p] (p = 0: plain squared error).
    """
    m = flow_map.manifold
    dt = (t - s).clamp_min(1e-6)
    with torch.no_grad():
        _, dx = jvp(lambda ss: flow_map(ss, t, path.point(x0, x1, ss)), (s,), (torch.ones_like(s),))
    xs = path.point(x0, x1, s).detach()
    x = flow_map(s, t, xs)
    with torch.no_grad():
        xd = x.detach()
        target = m.projx(m.expmap(xd, dt.reshape(-1, 1) * m.proju(xd, dx)))
    loss = m.sqdist(x, target) / dt**2
    if norm_p > 0:
        loss = loss / (loss.detach() + norm_c) ** norm_p
    return loss


SD_LOSSES: dict[str, Callable[..., Tensor]] = {
    "lagrangian": lagrangian_loss,
    "eulerian": eulerian_loss,
    "progressive": progressive_loss,
}


class FlowMapObjective:
    """L = mean L_RFM (diagonal) + mean L_SD (off-diagonal) for one self-distillation method (docs/flowmaps.md (F7)).

    Args:
        path: the geodesic path (carries the manifold).
        method: 'rfm' (diagonal only: the Riemannian flow-matching baseline), 'lagrangian' (G-LSD),
            'eulerian' (G-ESD), 'progressive' (G-PSD) or 'meanflow' (G-MF, Riemannian MeanFlow, our reconstruction).
        diag_fraction: share of the batch used for the diagonal term, in (0, 1) [X, default 0.75];
            ignored (all diagonal) for 'rfm'.
        st_sampling: 'scaled' (t ~ U, s = t U) [X default] or 'sorted' (sorted pair of uniforms).
        midpoint: G-PSD intermediate time, 'mid' ((s+t)/2, [R]) or 'uniform' (u ~ U[s, t], [X]).
        mf_norm_p: G-MF adaptive loss weight power (MeanFlow's p; 0 = plain squared error, the default).
    """

    def __init__(
        self,
        path: GeodesicPath,
        method: str = "lagrangian",
        diag_fraction: float = 0.75,
        st_sampling: str = "scaled",
        midpoint: str = "mid",
        mf_norm_p: float = 0.0,
    ) -> None:
        check_choice("flowmap.method", method, METHODS)
        check_choice("flowmap.st_sampling", st_sampling, ST_SAMPLING)
        check_choice("flowmap.midpoint", midpoint, MIDPOINTS)
        if not isinstance(diag_fraction, (int, float)) or not (0.0 < diag_fraction < 1.0):
            raise ConfigError(f"flowmap.diag_fraction={diag_fraction!r} is not accepted; it must be in (0, 1)")
        self.path, self.method, self.diag_fraction = path, method, float(diag_fraction)
        self.st_sampling, self.midpoint = st_sampling, midpoint
        if not isinstance(mf_norm_p, (int, float)) or mf_norm_p < 0:
            raise ConfigError(f"flowmap.mf_norm_p={mf_norm_p!r} is not accepted; it must be >= 0")
        self.mf_norm_p = float(mf_norm_p)

    def sample_st(self, n: int, *, generator: torch.Generator | None = None, dtype=torch.float32) -> tuple[Tensor, Tensor]:
        """Off-diagonal times 0 <= s <= t <= 1 by the configured scheme (on the generator's device)."""
        dev = generator.device if generator is not None else None
        a = torch.rand(n, generator=generator, dtype=dtype, device=dev)
        b = torch.rand(n, generator=generator, dtype=dtype, device=dev)
        if self.st_sampling == "scaled":
            return a * b, a
        return torch.minimum(a, b), torch.maximum(a, b)

    def __call__(self, flow_map: FlowMap, x0: Tensor, x1: Tensor, *, generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Return {'loss': scalar, 'diag': per-sample L_RFM, 'sd': per-sample L_SD (empty for 'rfm')}."""
        b = x0.shape[0]
        n_diag = b if self.method == "rfm" else min(b - 1, max(1, round(self.diag_fraction * b)))
        t = self.path.sample_t(n_diag, generator=generator, dtype=x0.dtype).to(x0.device)
        diag = rfm_loss(flow_map, self.path, x0[:n_diag], x1[:n_diag], t)
        loss = diag.mean()
        sd = x0.new_zeros(0)
        if self.method != "rfm":
            s, tt = (a.to(x0.device) for a in self.sample_st(b - n_diag, generator=generator, dtype=x0.dtype))
            xs = self.path.point(x0[n_diag:], x1[n_diag:], s)
            if self.method == "meanflow":
                sd = meanflow_loss(flow_map, self.path, x0[n_diag:], x1[n_diag:], s, tt, self.mf_norm_p)
            elif self.method == "progressive":
                u = None
                if self.midpoint == "uniform":
                    dev = generator.device if generator is not None else None
                    u = s + (tt - s) * torch.rand(s.shape[0], generator=generator, dtype=x0.dtype, device=dev).to(x0.device)
                sd = progressive_loss(flow_map, xs, s, tt, u)
            else:
                sd = SD_LOSSES[self.method](flow_map, xs, s, tt)
            loss = loss + sd.mean()
        return {"loss": loss, "diag": diag, "sd": sd}
