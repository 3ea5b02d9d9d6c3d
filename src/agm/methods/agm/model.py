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
import torch.nn.functional as F
from torch import Tensor, nn

from agm.methods.agm.config import Config
from agm.nets import PotentialMLP, TimeMLP, UNet, build_potential
from agm.methods.agm.weighting import (FixedTimeWeighting, PairCoupling, PotentialWeighting, TimeLogVariance, potential_loss,
                                       weight_logs)
from agm.objectives.bridge_matching import per_sample_mse
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


class _AttachGradients(torch.autograd.Function):
    """A scalar whose gradients with respect to ``params`` were computed already: backward hands them on.

    forward(value, grads, *params) returns ``value``; backward returns grad_output * grads for the params.
    Used by the potential's fused step (:func:`potential_mlp_loss`), which computes L_V's gradients by hand.
    """

    @staticmethod
    def forward(ctx, value: Tensor, grads: list[Tensor], *params: Tensor) -> Tensor:  # noqa: D102
        ctx.grads = grads
        return value.view_as(value)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # noqa: D102
        grads = torch._foreach_mul(ctx.grads, grad_out)
        ctx.grads = None
        return (None, None, *grads)


def _silu_mlp(pot: nn.Module) -> tuple[nn.Module, nn.Linear, list[nn.Linear]] | None:
    """(sinusoidal embedding, time Linear, [Linear layers]) of a PotentialMLP with SiLU activations and no hooks,
    else None. Read on every call, so a layer replaced or a hook added later is seen
    (tests/methods/agm/test_speed_potential.py)."""
    if type(pot) is not PotentialMLP or getattr(pot, "_compiled_call_impl", None) is not None:
        return None
    tm = pot.net
    te = list(tm.time_embed)
    layers = list(tm.net.net)
    if len(te) != 3 or not isinstance(te[1], nn.Linear) or type(te[2]) is not nn.SiLU:
        return None
    linears = layers[0::2]
    if not all(type(a) is nn.SiLU for a in layers[1::2]) or not all(type(q) is nn.Linear for q in linears):
        return None
    modules = [pot, tm, tm.time_embed, tm.net, tm.net.net, *te, *layers]
    if any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks for m in modules):
        return None
    return te[0], te[1], linears


def potential_mlp_loss(pot: PotentialMLP, x: Tensor, t: Tensor, ell: Tensor, target_u: Tensor | None,
                       objective: str = "nll") -> tuple[Tensor, Tensor] | None:
    """V_phi(x, t) (no graph) and L_V = mean_i loss_V(V_i) whose phi-gradients are computed here by hand.

    The same operations as autograd would run for the PotentialMLP forward, the potential objective
    (methods.agm.weighting.potential_loss) and their backward, but without recording a graph: one autograd
    node instead of about 25 (V_phi is tiny, so on the CPU its step time is per-operation overhead). The
    result equals the autograd path to float rounding (tests/methods/agm/test_speed_potential.py).
    Returns None when ``pot`` is not a plain SiLU PotentialMLP (the caller then uses autograd).
    """
    parts = _silu_mlp(pot)
    if parts is None:
        return None
    emb, lin_t, linears = parts
    params = [lin_t.weight, lin_t.bias]
    for q in linears:
        params += [q.weight, q.bias]
    with torch.no_grad():
        if t.dim() == 0:
            t = t.expand(x.shape[0])
        e = emb.forward(t)  # the module's own forward, without __call__ (no hooks: checked above)
        a_t = F.linear(e, lin_t.weight, lin_t.bias)
        s_t = F.silu(a_t)
        h = torch.cat([x, s_t if s_t.dtype == x.dtype else s_t.to(x.dtype)], dim=-1)
        inputs, pre = [h], []
        for q in linears[:-1]:
            a = F.linear(h, q.weight, q.bias)
            h = F.silu(a)
            pre.append(a)
            inputs.append(h)
        v = F.linear(h, linears[-1].weight, linears[-1].bias).squeeze(-1)
        # L_V and dL_V/dV (as methods.agm.weighting.potential_loss, with ell and the target stopped)
        g = 1.0 / v.shape[0]
        if objective == "nll":
            e_v = torch.exp(-v)
            value = (ell * e_v + v).mean()
            dv = g - (g * ell) * e_v
        else:
            ref = torch.log(ell.clamp_min(1e-12)) if objective == "regress" else 0.5 * target_u.pow(2).flatten(1).mean(dim=1)
            d = v - ref
            value = d.pow(2).mean()
            dv = g * (2 * d)
        # backward through the layers (Linear: dW = g^T h, db = sum g, dh = g W; SiLU: silu_backward)
        n = len(linears)
        grads: list[Tensor] = [None] * (2 * n + 2)  # type: ignore[list-item]
        gr = dv.unsqueeze(-1)
        silu_backward = torch.ops.aten.silu_backward
        for i in range(n - 1, -1, -1):
            grads[2 * i + 2] = gr.t().mm(inputs[i])
            grads[2 * i + 3] = gr.sum(0)
            gin = gr.mm(linears[i].weight)
            gr = silu_backward(gin, pre[i - 1]) if i > 0 else gin
        g_t = silu_backward(gr[:, x.shape[-1]:], a_t)
        grads[0] = g_t.t().mm(e)
        grads[1] = g_t.sum(0)
    return v, _AttachGradients.apply(value, grads, *params)


def bridge_draws(path: BrownianBridge, x0: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """The random numbers of ``path.sample(x0, x1, generator=generator)``, drawn in its order: t ~ U[t_min, t_max]
    (as path.sample_t) and eps ~ N(0, I) of x0's shape and dtype. ``path.sample(x0, x1, t, eps=eps)`` then gives the
    same sample, bit for bit, with no draw left inside it."""
    t = path.sample_t(x0.shape[0], generator=generator, device=x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    return t, eps


class AGM(nn.Module):
    """Drift f_theta with an optional weighting (None: the drift-only baseline) and optional pair coupling.

    ``weighting`` is a :class:`PotentialWeighting` (with ``potential`` = V_phi for AGM or u(t) for the
    time-only control) or a :class:`FixedTimeWeighting` (no potential). ``coupling`` (a :class:`PairCoupling`)
    resamples the pairs (x0, x1) of each batch before the bridge is drawn (the path-level variant).
    Implements the trainer's method protocol: ``networks()``, ``ema_names`` and ``loss(x1, step, generator)``.
    ``loss`` makes every draw from the generator first (x0, the coupling, then the bridge's t and eps:
    :func:`bridge_draws`), so that torch.compile of the whole loss (train.compile_scope=loss) traces what follows
    (drift and V_phi forwards, weights, loss) as one graph.

    Speed (docs/performance.md, CPU): a plain SiLU PotentialMLP's loss and gradients are computed by hand
    (:func:`potential_mlp_loss`, the same numbers as autograd; ``fused_potential = False`` turns it off; under
    train.compile_scope=loss V_phi goes through autograd inside the compiled graph instead), and
    ``potential_every = k`` > 1 (an option; default 1) trains V_phi on every k-th batch only (step % k == 0) while
    the weights still come from V_phi on every batch.
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
        potential_every: int = 1,
    ) -> None:
        super().__init__()
        if not isinstance(potential_every, int) or potential_every < 1:
            raise ValueError(f"potential_every={potential_every!r} must be an integer >= 1")
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
        # speed options (docs/performance.md, CPU): V_phi's loss and gradients by hand (same numbers to rounding; on
        # by default) and training V_phi only on every k-th step's batch (k = 1, the default, is every step)
        self.fused_potential = True
        self.potential_every = potential_every
        # False: loss() returns only {'loss'} (no weight statistics: about 25 small operations fewer). A trainer that
        # knows which steps it logs may set it before each loss() call (docs/performance.md); default True
        self.logs_wanted = True

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
        # the bridge's own draws (t, then eps: as path.sample draws them) here, in this frame, so that under
        # torch.compile (train.compile_scope=loss) every draw from the generator comes before the rest, which is then
        # traced as one graph: drift, V_phi, weights and loss (a draw inside a nested call would split that graph)
        t, eps = bridge_draws(self.path, x0, generator)
        s = self.path.sample(x0, x1, t, eps=eps)
        if isinstance(self.drift, EndpointDrift):
            ell = per_sample_mse(self.drift.endpoint(s.xt, s.t), x1)
        else:
            ell = per_sample_mse(self.drift(s.xt, s.t), s.target)  # bridge_matching_loss on this sample
        if self.weighting is None:
            drift_loss = ell.mean()
            return drift_loss, {"loss": drift_loss.detach(), "drift_loss": drift_loss.detach(), **coupling_logs}
        v, pot_loss, pot_value = self._potential_outside_autograd(s, ell, step)
        if v is None and self.potential is not None and not self.logs_wanted and torch.compiler.is_compiling():
            # under torch.compile (train.compile_scope=loss) V_phi runs through autograd; on a step nobody logs, only
            # PotentialWeighting.losses' two terms, without its statistics (the same numbers, fewer kernels in the graph)
            v = self.potential(s.xt.detach(), s.t)
            pot_loss = potential_loss(v, ell, s.target, self.weighting.objective).mean()
        if v is not None:  # the same as PotentialWeighting.losses, with V_phi and L_V computed already
            w = self.weighting.weights(v, s.t, step)
            drift_loss = (w * ell).mean()
            if not self.logs_wanted:
                total = drift_loss if pot_loss is None else drift_loss + pot_loss
                return total, {"loss": total.detach()}
            logs = weight_logs(w, v, s.t)
        else:
            v = None if self.potential is None else self.potential(s.xt.detach(), s.t)
            drift_loss, pot_loss, logs = self.weighting.losses(v, ell, s.t, s.target, step)
        total = drift_loss if pot_loss is None else drift_loss + pot_loss
        logs.update(loss=total.detach(), drift_loss=drift_loss.detach(), unweighted_drift_loss=ell.detach().mean(), **coupling_logs)
        if pot_loss is not None or pot_value is not None:
            logs["potential_loss"] = pot_loss.detach() if pot_loss is not None else pot_value
        return total, logs

    def _potential_outside_autograd(self, s, ell: Tensor, step: int) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """(V, L_V, L_V's value when it is not trained) when V_phi runs outside autograd's graph, else Nones.

        * potential_every = k > 1, on a step with step % k != 0: V without gradient and L_V = None (V_phi is not
          trained on this batch; its loss value is still logged as 'potential_loss');
        * otherwise, on the CPU/GPU without autocast and for a plain SiLU PotentialMLP: :func:`potential_mlp_loss`;
          not while torch.compile traces the loss (train.compile_scope=loss): there V_phi runs through autograd inside
          the one graph, AOTAutograd derives its backward with the drift's and inductor fuses both, so the hand path's
          saving (autograd's per-operation overhead) has nothing left to save; the same numbers to float rounding.
        """
        w = self.weighting
        if self.potential is None or not isinstance(w, PotentialWeighting):
            return None, None, None
        if self.potential_every > 1 and step % self.potential_every:
            with torch.no_grad():
                v = self.potential(s.xt.detach(), s.t)
                return v, None, potential_loss(v, ell, s.target, w.objective).mean()
        if (not self.fused_potential or not torch.is_grad_enabled() or torch.compiler.is_compiling()
                or torch.is_autocast_enabled(s.xt.device.type)):
            return None, None, None
        out = potential_mlp_loss(self.potential, s.xt.detach(), s.t, ell, s.target, w.objective)
        return (None, None, None) if out is None else (*out, None)


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
        every = int(p.every)
        return (AGM(drift, path, potential, weighting, potential_every=every),
                sum(q.numel() for q in potential.parameters()) / n_drift)
    potential, ratio = build_potential(drift, data_shape, budget=p.budget, depth=p.depth)
    coupling = None
    if cfg.method == "agm_path":
        coupling = PairCoupling(pair_temperature(cfg, data_shape), cfg.coupling.iters)
    every = int(p.every)  # potential.every: train V_phi on every k-th batch (docs/performance.md, CPU)
    return AGM(drift, path, potential, weighting, coupling=coupling, potential_every=every), ratio


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
