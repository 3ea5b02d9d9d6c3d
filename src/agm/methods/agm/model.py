"""AGM (our interpretation of Action-Inspired Generative Models, arXiv 2605.14631) and its drift-only baseline.

Training step (arXiv 2605.14631 as we read it; docs/agm.md):
    x_0 ~ N(0, I), x_1 ~ data, t ~ U[t_min, t_max], x_t, u_t from the Brownian bridge;
    l_i = (1/d) ||f_theta(x_t, t) - u_t||^2                                   (per bridge sample)
    baseline:  L = mean_i l_i
    AGM:       L_f = mean_i w_i l_i,  w = sg(normalised exp(-s V_phi(x_t, t) / tau))
               L_V = mean_i [sg(l_i) e^{-V_phi} + V_phi]    (default 'nll'; see methods.agm.weighting)
Because the weights and residuals cross the stop-gradient, d L_f / d phi = 0 and d L_V / d theta = 0, so
the sum L_f + L_V is minimised by one backward pass with separate parameter groups.
Controls and the path-level variant (docs/agm.md), selected by ``method``:
    time_weight   V = u(t), a learned time-only log-variance (EDM2), same objective and weights
    fixed_weight  w = normalised lambda(t), no network
    agm_path      AGM after resampling the pairs (x0, x1) from a Sinkhorn-balanced pair matrix (ours)
Inference: Euler-Maruyama over the EMA drift, dX = f(X, t) dt + sigma dW; V_phi (or u(t)) is not used.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from agm.methods.agm.config import Config
from agm.nets import TimeMLP, UNet, build_potential
from agm.methods.agm.weighting import FixedTimeWeighting, PairCoupling, PotentialWeighting, TimeLogVariance
from agm.objectives.bridge_matching import bridge_matching_loss, per_sample_mse
from agm.paths.bridge import BrownianBridge
from agm.samplers import EulerMaruyama, ODESampler


class EndpointDrift(nn.Module):
    """Drift from an endpoint predictor (docs/agm.md, options): f(x, t) = (x1_hat(x, t) - x) / (1 - t).

    Training regresses x1_hat onto x_1, l = (1/d)||x1_hat - x_1||^2 = (1 - t)^2 (1/d)||f - u_t||^2, the
    same bridge-matching minimiser with a time weighting that keeps the target bounded as t -> 1.
    ``t_clamp`` keeps 1 - t away from 0 when the drift is evaluated at t = 1.
    """

    def __init__(self, net: nn.Module, t_clamp: float = 1e-3) -> None:
        super().__init__()
        self.net = net
        self.t_clamp = t_clamp

    def endpoint(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(x, t)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        one_minus_t = (1 - t).clamp_min(self.t_clamp).reshape(-1, *([1] * (x.dim() - 1)))
        return (self.net(x, t) - x) / one_minus_t


class AGM(nn.Module):
    """Drift f_theta with an optional weighting (None: the drift-only baseline) and optional pair coupling.

    ``weighting`` is a :class:`PotentialWeighting` (with ``potential`` = V_phi for AGM or u(t) for the
    time-only control) or a :class:`FixedTimeWeighting` (no potential). ``coupling`` (a :class:`PairCoupling`)
    resamples the pairs (x0, x1) of each batch before the bridge is drawn (the path-level variant).
    Implements the trainer's method protocol: ``networks()``, ``ema_names`` and ``loss(x1, step, generator)``.
    """

    ema_names: tuple[str, ...] = ("drift",)

    def __init__(
        self,
        drift: nn.Module,
        path: BrownianBridge,
        potential: nn.Module | None = None,
        weighting: PotentialWeighting | FixedTimeWeighting | None = None,
        prior_std: float = 1.0,
        coupling: PairCoupling | None = None,
    ) -> None:
        super().__init__()
        needs = weighting is not None and getattr(weighting, "needs_potential", True)
        if (potential is not None) != needs:
            raise ValueError("a potential is given exactly when the weighting needs one (PotentialWeighting); "
                             "both None = drift-only baseline")
        self.drift = drift
        self.potential = potential
        self.path = path
        self.weighting = weighting
        self.prior_std = prior_std
        self.coupling = coupling

    def networks(self) -> dict[str, nn.Module]:
        nets = {"drift": self.drift}
        if self.potential is not None:
            nets["potential"] = self.potential
        return nets

    def loss(self, x1: Tensor, step: int, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss for one batch of data x1 and the scalars to log (detached 0-d tensors)."""
        x0 = self.prior_std * torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
        coupling_logs: dict[str, Tensor] = {}
        if self.coupling is not None:
            x1, coupling_logs = self.coupling.resample(x0, x1, generator)
        if isinstance(self.drift, EndpointDrift):
            s = self.path.sample(x0, x1, generator=generator)
            ell = per_sample_mse(self.drift.endpoint(s.xt, s.t), x1)
        else:
            ell, s = bridge_matching_loss(self.drift, self.path, x0, x1, generator=generator)
        if self.weighting is None:
            drift_loss = ell.mean()
            return drift_loss, {"loss": drift_loss.detach(), "drift_loss": drift_loss.detach(), **coupling_logs}
        v = None if self.potential is None else self.potential(s.xt.detach(), s.t)
        drift_loss, pot_loss, logs = self.weighting.losses(v, ell, s.t, s.target, step)
        total = drift_loss if pot_loss is None else drift_loss + pot_loss
        logs.update(loss=total.detach(), drift_loss=drift_loss.detach(), unweighted_drift_loss=ell.detach().mean(), **coupling_logs)
        if pot_loss is not None:
            logs["potential_loss"] = pot_loss.detach()
        return total, logs


def build_drift(cfg: Config, data_shape: Sequence[int]) -> nn.Module:
    """The drift network named by cfg.model for one sample's shape."""
    net = _build_net(cfg, data_shape)
    return EndpointDrift(net) if cfg.model.parameterisation == "endpoint" else net


def _build_net(cfg: Config, data_shape: Sequence[int]) -> nn.Module:
    m = cfg.model
    if m.kind == "mlp":
        if len(data_shape) != 1:
            from agm.errors import ConfigError

            raise ConfigError(f"model.kind='mlp' needs vector data (D,), got shape {tuple(data_shape)}; use model.kind='unet' for images")
        return TimeMLP(data_shape[0], hidden=m.hidden, depth=m.depth, time_dim=m.time_dim)
    if len(data_shape) != 3:
        from agm.errors import ConfigError

        raise ConfigError(f"model.kind='unet' needs image data (C, H, W), got shape {tuple(data_shape)}")
    return UNet(
        in_channels=data_shape[0],
        channels=m.channels,
        channel_mult=tuple(m.channel_mult),
        num_res_blocks=m.num_res_blocks,
        attn_resolutions=tuple(m.attn_resolutions),
        image_size=data_shape[1],
        dropout=m.dropout,
        heads=m.heads,
        head_channels=m.head_channels,
        resample=m.resample,
        skip_rescale=m.skip_rescale,
    )


def pair_temperature(cfg: Config, data_shape: Sequence[int]) -> float:
    """coupling.temperature, or sigma^2 / d (the Schrodinger-bridge static coupling) when it is null."""
    if cfg.coupling.temperature is not None:
        return float(cfg.coupling.temperature)
    d = 1
    for n in data_shape:
        d *= int(n)
    return cfg.path.sigma**2 / d


def build_method(cfg: Config, data_shape: Sequence[int]) -> tuple[AGM, float | None]:
    """Build the arm named by cfg.method (docs/agm.md). Returns (method, potential/drift parameter ratio or None).

    baseline: drift-only; agm: V_phi(x_t, t) weights; time_weight: u(t) weights (EDM2 control);
    fixed_weight: lambda(t) weights (no network); agm_path: AGM on Sinkhorn-resampled pairs (ours).
    """
    drift = build_drift(cfg, data_shape)
    path = BrownianBridge(cfg.path.sigma, cfg.path.t_min, cfg.path.t_max)
    if cfg.method == "baseline":
        return AGM(drift, path), None
    p = cfg.potential
    clip = None if p.clip is None else tuple(p.clip)
    if cfg.method == "fixed_weight":
        f = cfg.fixed_weight
        weighting = FixedTimeWeighting(schedule=f.schedule, sigma=cfg.path.sigma, offset=f.offset, power=f.power,
                                       normalise=p.normalise, time_bins=p.time_bins, clip=clip)
        return AGM(drift, path, None, weighting), None
    weighting = PotentialWeighting(
        objective=p.objective, sign=p.sign, normalise=p.normalise, temperature=p.temperature,
        time_bins=p.time_bins, clip=clip, warmup_steps=p.warmup_steps,
    )
    if cfg.method == "time_weight":
        potential = TimeLogVariance(cfg.time_weight.features)
        n_drift = sum(q.numel() for q in drift.parameters())
        return AGM(drift, path, potential, weighting), sum(q.numel() for q in potential.parameters()) / n_drift
    potential, ratio = build_potential(drift, data_shape, budget=p.budget, depth=p.depth)
    coupling = None
    if cfg.method == "agm_path":
        coupling = PairCoupling(pair_temperature(cfg, data_shape), cfg.coupling.iters)
    return AGM(drift, path, potential, weighting, coupling=coupling), ratio


@torch.no_grad()
def generate(
    drift: nn.Module,
    n: int,
    data_shape: Sequence[int],
    *,
    sigma: float,
    steps: int = 100,
    method: str = "em",
    prior_std: float = 1.0,
    generator: torch.Generator | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 10000,
) -> Tensor:
    """Samples from x_0 ~ N(0, prior_std^2 I) integrated to t = 1 (EM with noise sigma, or an ODE)."""
    sampler = EulerMaruyama(steps) if method == "em" else ODESampler(steps, method=method)
    out = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        x0 = prior_std * torch.randn((b, *data_shape), generator=generator, device=device)
        if method == "em":
            out.append(sampler.sample(drift, x0, sigma, generator=generator))
        else:
            out.append(sampler.sample(drift, x0))
    return torch.cat(out)
