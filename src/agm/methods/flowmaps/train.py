"""Flow maps on the shared Trainer: the method object (Trainer protocol), an in-process training call, sampling
and evaluation (GFM, arXiv 2510.21608; equations (F1)-(F7) of docs/flowmaps.md).

The Trainer (:class:`agm.training.Trainer`) owns the loop: batches x1 ~ data drawn with its generator, AdamW
(weight decay 0 by default, i.e. Adam), per-network gradient clipping, the EMA of the flow map (the EMA copy is
what sampling uses), the NaN guard, checkpoints and metrics. Each step the method draws x0 ~ rho_0 (the manifold's
prior, independent of x1: no coupling) and returns L = mean L_RFM + mean L_SD
(:class:`agm.methods.flowmaps.losses.FlowMapObjective`). ``train.lr`` is constant (the Trainer has no schedule).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from agm.errors import ConfigError, DataError, check_choice, check_positive
from agm.manifolds.base import Manifold
from agm.metrics.geodesic import geodesic_mmd2, geodesic_w2
from agm.methods.flowmaps.config import Config
from agm.methods.flowmaps.losses import FlowMapObjective
from agm.methods.flowmaps.nets import FlowMap, FlowMapMLP
from agm.methods.flowmaps.sampler import FlowMapSampler, RiemannianODESampler
from agm.paths.geodesic import GeodesicPath


def cpu_generator(generator: torch.Generator | None) -> torch.Generator | None:
    """A CPU generator for the manifold priors (which draw on the CPU): ``generator`` itself when it is a CPU one,
    else a CPU generator seeded from one draw of ``generator`` (so a CUDA run stays reproducible and resumable)."""
    if generator is None or generator.device.type == "cpu":
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator().manual_seed(seed)


def build_flow_map(manifold: Manifold, cfg: Config) -> FlowMap:
    """X_{s,t}(x) = exp_x((t - s) v_{s,t}(x)) with f_theta = FlowMapMLP(cfg.model) (docs/flowmaps.md (F1))."""
    return FlowMap(manifold, FlowMapMLP(manifold, cfg.model.hidden, cfg.model.depth, cfg.model.n_freq))


class FlowMapMethod:
    """The Trainer protocol for flow maps: one network ``flow_map`` (EMA kept) and its loss.

    ``loss(x1, step, generator)``: x0 ~ rho_0 drawn with ``generator``; L = mean L_RFM + mean L_SD for cfg.method
    ('rfm' trains the diagonal only: the Riemannian flow-matching baseline).
    """

    ema_names = ("flow_map",)

    def __init__(self, manifold: Manifold, cfg: Config) -> None:
        self.manifold, self.cfg = manifold, cfg
        self.flow_map = build_flow_map(manifold, cfg)
        o = cfg.objective
        self.objective = FlowMapObjective(GeodesicPath(manifold), cfg.method, o.diag_fraction, o.st_sampling, o.midpoint, o.mf_norm_p)

    def networks(self) -> dict[str, nn.Module]:
        return {"flow_map": self.flow_map}

    def loss(self, batch: Tensor, step: int, generator: torch.Generator) -> tuple[Tensor, dict[str, Any]]:
        if not isinstance(self.flow_map, FlowMap):  # the Trainer wrapped it in DistributedDataParallel (torchrun)
            raise ConfigError(
                "flow maps train in one process: the losses call the flow map's velocity and forward-mode JVPs, which "
                "DistributedDataParallel does not pass through; run 'agm flowmaps train' without torchrun"
            )
        x1 = batch
        x0 = self.manifold.random_base(x1.shape[0], generator=cpu_generator(generator), dtype=x1.dtype).to(x1.device)
        out = self.objective(self.flow_map, x0, x1, generator=generator)
        logs = {"loss": out["loss"].detach(), "diag": out["diag"].detach().mean()}
        if out["sd"].numel():
            logs["sd"] = out["sd"].detach().mean()
        return out["loss"], logs


@dataclass
class TrainResult:
    """The trained flow map (its EMA copy, in eval mode) and the Trainer's logged records."""

    flow_map: FlowMap
    history: list[dict] = field(default_factory=list)


def train_flow_map(manifold: Manifold, data: Tensor, cfg: Config, out_dir: str | None = None) -> TrainResult:
    """Train a flow map on ``data`` (points on ``manifold``) in process, through the shared Trainer.

    The same loop as ``agm flowmaps train`` (network initialised from torch.manual_seed(cfg.seed), batches and
    prior draws from the Trainer's generator seeded with cfg.seed); ``out_dir`` (None: nothing written) gets
    checkpoints and metrics.jsonl. Returns the EMA flow map.
    """
    from agm.training.devices import resolve_device
    from agm.training.trainer import Trainer

    cfg.validate()
    manifold.check_point(data, "data")
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.seed)
    method = FlowMapMethod(manifold, cfg)
    method.flow_map.to(device)
    import dataclasses

    trainer = Trainer(method, data, dataclasses.replace(cfg.train, device=str(device)), out_dir=out_dir, seed=cfg.seed)
    history = trainer.fit()
    ema = trainer.ema["flow_map"].model if "flow_map" in trainer.ema else method.flow_map
    return TrainResult(ema.eval(), history)


def sample_mode(cfg: Config, mode: str | None = None) -> str:
    """'map' or 'ode': ``mode`` (or cfg.sample.mode); 'auto' is 'ode' for the RFM baseline and 'map' otherwise."""
    mode = cfg.sample.mode if mode is None else mode
    check_choice("mode", mode, ("auto", "map", "ode"))
    if mode == "auto":
        return "ode" if cfg.method == "rfm" else "map"
    return mode


def sample_flow_map(flow_map: FlowMap, n: int, nfe: int, *, mode: str, seed: int = 0, ode_method: str = "euler",
                    generator: torch.Generator | None = None, device: torch.device | str | None = None) -> Tensor:
    """n samples with ``nfe`` network evaluations: mode 'map' (k-step flow map X_{t_i,t_{i+1}}, (F6)) or 'ode'
    (Riemannian ODE on the diagonal v_{t,t}; euler uses nfe steps, midpoint nfe/2 steps). The prior draws come from
    ``generator`` (default: a CPU generator seeded with 10_000 + seed). DataError if a sample is off the manifold."""
    check_choice("mode", mode, ("map", "ode"))
    check_choice("ode_method", ode_method, RiemannianODESampler.METHODS)
    check_positive("nfe", nfe, integer=True)
    check_positive("n", n, integer=True)
    if mode == "ode" and ode_method == "midpoint" and nfe % 2:
        raise ConfigError(f"nfe={nfe!r} is not accepted for ode_method='midpoint'; it needs an even nfe (2 evaluations a step)")
    m = flow_map.manifold
    g = cpu_generator(generator) if generator is not None else torch.Generator().manual_seed(10_000 + seed)
    x0 = m.random_base(n, generator=g)
    if device is not None:
        x0 = x0.to(device)
    if mode == "map":
        x = FlowMapSampler(nfe).sample(flow_map, x0)
    else:
        steps = nfe if ode_method == "euler" else nfe // 2
        x = RiemannianODESampler(m, steps, ode_method).sample(flow_map.field, x0)
    return check_on_manifold(m, x)


def check_on_manifold(manifold: Manifold, x: Tensor) -> Tensor:
    """x, or DataError saying how many samples left the manifold (NaN/inf counts as off)."""
    ok = manifold.belongs(x)
    if not bool(ok.all()):
        bad = int((~ok).sum())
        err = float(manifold.constraint_error(x[~ok].nan_to_num(nan=float("inf"))).max()) if bad else 0.0
        raise DataError(
            f"{bad} of {x.shape[0]} samples are not on {manifold.describe()} (largest constraint error {err:.3g}, "
            f"tolerance {manifold.atol:g}; {manifold.constraint()}); the sampler diverged: try more steps or a longer-trained model"
        )
    return x


def evaluate_samples(manifold: Manifold, samples: Tensor, heldout: Tensor, bandwidth: float, seed: int = 0,
                     max_samples: int = 1000) -> dict:
    """{'mmd2': geodesic MMD^2 with ``bandwidth``, 'mmd2_narrow': the same with bandwidth / 4, 'w2': geodesic W2,
    'on_manifold': all rows within manifold.atol, 'constraint_max_err': max constraint violation}."""
    err = float(manifold.constraint_error(samples).max())
    return {
        "mmd2": geodesic_mmd2(manifold, samples, heldout, bandwidth=bandwidth, max_samples=max_samples, seed=seed),
        "mmd2_narrow": geodesic_mmd2(manifold, samples, heldout, bandwidth=bandwidth / 4, max_samples=max_samples, seed=seed),
        "w2": geodesic_w2(manifold, samples, heldout, max_samples=max_samples, seed=seed),
        "on_manifold": bool(manifold.belongs(samples).all()),
        "constraint_max_err": err,
    }


__all__ = ["FlowMapMethod", "TrainResult", "build_flow_map", "train_flow_map", "sample_flow_map", "sample_mode",
           "check_on_manifold", "evaluate_samples", "cpu_generator"]
