"""Flow maps' config: one dataclass that is the method's defaults, its YAML schema and its command-line options
(``agm flowmaps train --help`` lists every key with its type and default). See docs/flowmaps.md.

Built-in data sets (``data.name``): ``sphere_vmf``, ``torus_wrapped``, ``hyperbolic_mixture``, ``so3_mixture`` and the
earth-like sets ``earth_volcano|earthquake|flood|fire`` on S^2; a user's file
with ``data.path`` (``--data FILE``) and ``data.manifold`` = sphere (latitude/longitude in degrees) or torus
(angles). Points on a manifold are never standardised: an affine map of latitude/longitude or of angles would
leave the manifold, so ``data.standardise=true`` is refused.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from agm.data.files import check_test_fraction
from agm.errors import ConfigError, check_choice, check_positive
from agm.training.config import TrainConfig, build_config, validate_config

METHODS = ("rfm", "lagrangian", "eulerian", "progressive", "meanflow")
SYNTHETIC_SETS = ("sphere_vmf", "torus_wrapped", "hyperbolic_mixture", "so3_mixture",
                  "earth_volcano", "earth_earthquake", "earth_flood", "earth_fire")
FILE_MANIFOLDS = ("sphere", "torus")

#: The one default learning rate, chosen by measurement (docs/flowmaps.md, "Learning rate"): constant lr on the
#: shared Trainer, 1e-3 vs 2e-3 on S^2 and T^2 x 4 methods x 3 seeds at 300 steps; 2e-3 won 31 of 32 cells.
DEFAULT_LR = 2e-3


def _train_defaults() -> TrainConfig:
    return TrainConfig(steps=2000, batch_size=256, lr=DEFAULT_LR, grad_clip=1.0, ema_decay=0.995, log_every=100, ckpt_every=500)


@dataclass
class DataConfig:
    name: str = "sphere_vmf"  # built-in set (sphere_vmf | torus_wrapped | hyperbolic_mixture | so3_mixture | earth_volcano | earth_earthquake | earth_flood | earth_fire) or 'file'
    path: Optional[str] = None  # user file (.csv/.tsv/.txt/.npy); sets name='file' and needs data.manifold
    manifold: Optional[str] = None  # user files: sphere (latitude, longitude in degrees) | torus (one angle a column)
    columns: list = field(default_factory=list)  # user files: columns to read, names or 0-based indices (sphere: [lat, lon])
    degrees: bool = True  # torus files: angles in degrees (false: radians)
    n_train: int = 20000  # built-in sets: training points (drawn once, seed 0)
    n_test: int = 1000  # built-in sets: held-out points (seed 10001)
    test_fraction: float = 0.1  # user files: held-out fraction (split by the run's seed)
    standardise: bool = False  # refused when true: points on a manifold are used as they are (docs/flowmaps.md)


@dataclass
class ModelConfig:
    hidden: int = 128  # MLP width
    depth: int = 3  # MLP depth
    n_freq: int = 4  # time features [tau, sin(pi k tau), cos(pi k tau)], k = 1..n_freq


@dataclass
class ObjectiveConfig:
    diag_fraction: float = 0.75  # share of the batch on the diagonal s = t (RFM term); the rest self-distils
    st_sampling: str = "scaled"  # off-diagonal times: scaled (t ~ U, s = t U) | sorted (sorted pair of uniforms)
    midpoint: str = "mid"  # G-PSD intermediate time: mid ((s + t) / 2) | uniform (u ~ U[s, t])
    mf_norm_p: float = 0.0  # G-MF (meanflow): MeanFlow's adaptive loss weight power p (0 = plain squared error)


@dataclass
class SampleConfig:
    steps: int = 1  # network evaluations: flow-map steps (mode=map) or Euler steps (mode=ode)
    mode: str = "auto"  # auto (map for flow maps, ode for rfm) | map (X_{t_i, t_i+1}) | ode (Riemannian Euler on v_{t,t})


@dataclass
class EvalConfig:
    n_samples: int = 1000  # samples drawn by 'agm flowmaps eval'
    max_samples: int = 1000  # subsample size of the geodesic MMD^2 / W2


@dataclass
class Config:
    method: str = "lagrangian"  # rfm (Riemannian flow matching baseline) | lagrangian (G-LSD) | eulerian (G-ESD) | progressive (G-PSD) | meanflow (G-MF)
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=_train_defaults)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> "Config":
        """Check every value; ConfigError naming the field and what is accepted."""
        check_choice("method", self.method, METHODS)
        check_choice("objective.st_sampling", self.objective.st_sampling, ("scaled", "sorted"))
        check_choice("objective.midpoint", self.objective.midpoint, ("mid", "uniform"))
        check_choice("sample.mode", self.sample.mode, ("auto", "map", "ode"))
        for name in ("model.hidden", "model.depth", "model.n_freq", "sample.steps", "eval.n_samples", "eval.max_samples",
                     "data.n_train", "data.n_test"):
            check_positive(name, self.get(name), integer=True)
        if self.train.batch_size < 2:
            raise ConfigError(f"train.batch_size={self.train.batch_size!r} must be >= 2 (the batch is split into the RFM and self-distillation terms)")
        if not 0 < self.objective.diag_fraction < 1:
            raise ConfigError(f"objective.diag_fraction={self.objective.diag_fraction!r} must be in (0, 1)")
        if self.objective.mf_norm_p < 0:
            raise ConfigError(f"objective.mf_norm_p={self.objective.mf_norm_p!r} must be >= 0")
        check_test_fraction(self.data.test_fraction)
        if self.data.standardise:
            raise ConfigError(
                "data.standardise=true is not accepted by flow maps: points on a manifold (latitude/longitude, angles) are "
                "used as they are, since standardising them would move them off the manifold; remove data.standardise"
            )
        if self.data.path is not None:
            if self.data.manifold is None:
                raise ConfigError(f"data.manifold=None is not accepted with data.path; accepted values: {list(FILE_MANIFOLDS)} "
                                  "(sphere: latitude, longitude in degrees; torus: one angle a column)")
            check_choice("data.manifold", self.data.manifold, FILE_MANIFOLDS)
        else:
            check_choice("data.name", self.data.name, SYNTHETIC_SETS)
        return self

    def get(self, dotted: str) -> Any:
        obj: Any = self
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(source: str | Path | dict | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Config from a YAML path, a dict or None (the defaults), then ``key=value`` overrides; validated."""
    cfg = build_config(Config, source, overrides, None, validate=False)
    if cfg.data.path is not None:
        cfg.data.name = "file"
    return validate_config(cfg)


__all__ = ["Config", "DataConfig", "ModelConfig", "ObjectiveConfig", "SampleConfig", "EvalConfig", "TrainConfig",
           "load_config", "METHODS", "SYNTHETIC_SETS", "FILE_MANIFOLDS", "DEFAULT_LR"]
