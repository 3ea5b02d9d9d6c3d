"""AGM's config: one dataclass that is its defaults, its YAML schema and its command-line options.

Loaded from YAML (a file or a built-in name under ``configs/``) plus ``key=value`` overrides through the
shared machinery of :mod:`agm.training.config`. Every run writes its resolved config to ``config.yaml``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from agm.data.files import UserTable
from agm.errors import ConfigError, check_choice, check_positive
from agm.training.config import TrainConfig, all_keys as _all_keys, build_config, save_config, validate_config

BUILTIN_DIR = Path(__file__).parent / "configs"
# the arms of docs/agm.md: drift-only, AGM, the two controls, and the path-level variant (ours)
METHODS = ("baseline", "agm", "time_weight", "fixed_weight", "agm_path")


@dataclass
class DataConfig(UserTable):
    name: str = "moons"  # built-in set (agm.data.toy.toy_names()) or 'file'
    n_train: int = 20000  # built-in sets: training points drawn once from the seed
    n_test: int = 5000  # built-in sets: held-out points for evaluation
    image_size: int = 0  # images: resize to this size (0 = keep the native size)


@dataclass
class PathConfig:
    sigma: float = 0.5  # bridge noise; 0 = linear flow-matching path
    t_min: float = 0.0
    t_max: float = 0.98  # training times ~ U[t_min, t_max]


@dataclass
class ModelConfig:
    kind: str = "mlp"  # mlp | unet
    parameterisation: str = "drift"  # drift: net = f(x, t); endpoint: net = x1_hat, f = (x1_hat - x) / (1 - t)
    hidden: int = 256
    depth: int = 3
    time_dim: int = 32
    channels: int = 32  # unet
    channel_mult: list = field(default_factory=lambda: [1, 2, 2])
    num_res_blocks: int = 1
    attn_resolutions: list = field(default_factory=list)
    dropout: float = 0.0
    heads: int = 4  # unet attention heads (ignored when head_channels > 0)
    head_channels: int = 0  # unet: channels per attention head (0: use `heads`)
    resample: str = "conv"  # unet up/down-sampling: see agm.nets.unet.RESAMPLE
    skip_rescale: bool = False  # unet: scale residual sums by 1/sqrt(2) (DDPM++)


@dataclass
class PotentialConfig:
    budget: float = 0.014  # parameters of V_phi / parameters of the drift (paper: ~1.4%)
    depth: int = 2
    objective: str = "nll"  # nll | regress | kinetic
    sign: str = "down"  # down | up
    normalise: str = "batch"  # batch | time_bins
    time_bins: int = 8
    temperature: float = 1.0
    clip: Optional[list] = field(default_factory=lambda: [0.1, 10.0])
    warmup_steps: int = 100
    lr: Optional[float] = None  # None: same as train.lr
    every: int = 1  # train V_phi on every k-th batch only (weights still from V_phi on every batch); 1 = every step


@dataclass
class TimeWeightConfig:  # method=time_weight: u(t) = linear head on [cos(pi k t), sin(pi k t)], k = 1..features
    features: int = 16


@dataclass
class FixedWeightConfig:  # method=fixed_weight: lambda(t), normalised and clipped as potential.normalise / potential.clip
    schedule: str = "inverse_variance"  # inverse_variance: 1 / (offset + sigma^2 t / (1 - t)) | power: (1 - t)^power
    offset: float = 1.0
    power: float = 1.0


@dataclass
class CouplingConfig:  # method=agm_path (ours): pairs resampled from a Sinkhorn-balanced exp(-||x1 - x0||^2 / (2 d tau))
    temperature: Optional[float] = None  # tau on the per-dimension action; None: sigma^2 / d (Schrodinger-bridge coupling)
    iters: int = 20  # Sinkhorn iterations (rows exact; logged pair_col_err = column error)


@dataclass
class SampleConfig:
    steps: int = 100
    method: str = "em"  # em | euler | heun
    sigma: Optional[float] = None  # EM noise; None = path.sigma (another value needs allow_sigma_mismatch)
    allow_sigma_mismatch: bool = False  # sample with sigma != path.sigma (the sampled law then differs from training's)


@dataclass
class EvalConfig:
    n_samples: int = 5000
    max_samples: int = 2000  # W2 subsample size


@dataclass
class Config:
    method: str = "agm"  # baseline | agm | time_weight | fixed_weight | agm_path (docs/agm.md)
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    path: PathConfig = field(default_factory=PathConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    potential: PotentialConfig = field(default_factory=PotentialConfig)
    time_weight: TimeWeightConfig = field(default_factory=TimeWeightConfig)
    fixed_weight: FixedWeightConfig = field(default_factory=FixedWeightConfig)
    coupling: CouplingConfig = field(default_factory=CouplingConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> "Config":
        """Check every value; raises ConfigError naming the field and what is accepted."""
        check_choice("method", self.method, METHODS)
        check_choice("fixed_weight.schedule", self.fixed_weight.schedule, ("inverse_variance", "power"))
        check_positive("fixed_weight.offset", self.fixed_weight.offset)
        check_positive("fixed_weight.power", self.fixed_weight.power, allow_zero=True)
        check_positive("time_weight.features", self.time_weight.features, integer=True)
        check_positive("coupling.iters", self.coupling.iters, integer=True)
        if self.coupling.temperature is not None:
            check_positive("coupling.temperature", self.coupling.temperature)
        elif self.method == "agm_path" and self.path.sigma == 0:
            raise ConfigError("method='agm_path' with path.sigma=0 needs coupling.temperature (> 0): its default sigma^2 / d is 0")
        check_choice("model.kind", self.model.kind, ("mlp", "unet"))
        check_choice("model.parameterisation", self.model.parameterisation, ("drift", "endpoint"))
        check_choice("sample.method", self.sample.method, ("em", "euler", "heun"))
        check_choice("potential.objective", self.potential.objective, ("nll", "regress", "kinetic"))
        check_choice("potential.sign", self.potential.sign, ("down", "up"))
        check_choice("potential.normalise", self.potential.normalise, ("batch", "time_bins"))
        for name in ("sample.steps",
                     "eval.n_samples", "eval.max_samples", "data.n_train", "data.n_test", "model.hidden", "model.depth",
                     "potential.depth", "potential.time_bins"):
            check_positive(name, self.get(name), integer=True)
        for name in ("potential.temperature", "potential.budget"):
            check_positive(name, self.get(name))
        check_positive("path.sigma", self.path.sigma, allow_zero=True)
        check_positive("potential.warmup_steps", self.potential.warmup_steps, integer=True, allow_zero=True)
        check_positive("potential.every", self.potential.every, integer=True)
        self.data.check_table()
        if self.potential.budget > 1:
            raise ConfigError(f"potential.budget={self.potential.budget!r} must be in (0, 1]")
        if self.potential.clip is not None and (len(self.potential.clip) != 2 or not 0 <= self.potential.clip[0] <= 1 <= self.potential.clip[1]):
            raise ConfigError(f"potential.clip={self.potential.clip!r} must be [min, max] with 0 <= min <= 1 <= max, or null")
        if self.path.sigma > 0 and self.path.t_max >= 1:
            raise ConfigError(f"path.t_max={self.path.t_max!r} must be < 1 when path.sigma > 0")
        if self.sample.sigma is not None and self.sample.sigma != self.path.sigma and not self.sample.allow_sigma_mismatch:
            raise ConfigError(
                f"sample.sigma={self.sample.sigma!r} differs from the training noise path.sigma={self.path.sigma!r}: "
                f"the drift was trained for the bridge with path.sigma, so EM with another sigma samples another law. "
                f"Remove sample.sigma, or set sample.allow_sigma_mismatch=true to do it on purpose"
            )
        if self.sample.method != "em" and self.path.sigma > 0:
            raise ConfigError(
                f"sample.method={self.sample.method!r} integrates dx = f dt, which carries the data marginals only when "
                f"path.sigma=0 (got path.sigma={self.path.sigma}); use sample.method='em' or path.sigma=0"
            )
        if not 0 <= self.path.t_min < self.path.t_max <= 1:
            raise ConfigError(f"path.t_min={self.path.t_min!r}, path.t_max={self.path.t_max!r} must satisfy 0 <= t_min < t_max <= 1")
        return self

    def get(self, dotted: str) -> Any:
        obj: Any = self
        for part in dotted.split("."):
            obj = getattr(obj, part)
        return obj

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def builtin_configs() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def all_keys(cfg: "Config | None" = None) -> list[str]:
    """Every dotted key of AGM's config."""
    return _all_keys(Config() if cfg is None else cfg)


def load_config(source: str | Path | dict | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Config from a YAML path, a built-in name (see ``builtin_configs()``), a dict or None (defaults)."""
    cfg = build_config(Config, source, overrides, BUILTIN_DIR, validate=False)
    cfg.data.resolve_file()
    return validate_config(cfg)


__all__ = ["Config", "DataConfig", "PathConfig", "ModelConfig", "PotentialConfig", "TimeWeightConfig", "FixedWeightConfig",
           "CouplingConfig", "METHODS", "TrainConfig", "SampleConfig",
           "EvalConfig", "load_config", "save_config", "all_keys", "builtin_configs", "BUILTIN_DIR"]
