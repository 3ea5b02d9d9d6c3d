"""Run configuration: nested dataclasses, loaded from YAML (a file or a built-in name) plus key=value overrides.

Every run writes its resolved config to ``config.yaml``. Unknown keys raise ConfigError naming the
closest valid key; values are type-checked against the dataclass field types.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

import yaml

from agm.errors import ConfigError, check_choice, check_positive, closest

BUILTIN_DIR = Path(__file__).parent / "configs"


@dataclass
class DataConfig:
    name: str = "moons"  # built-in set (agm.data.toy.toy_names()) or 'file'
    path: Optional[str] = None  # .npy / .csv of shape (N, D); sets name='file'
    n_train: int = 20000  # built-in sets: training points drawn once from the seed
    n_test: int = 5000  # built-in sets: held-out points for evaluation
    test_fraction: float = 0.1  # user files: held-out fraction
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


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # per network; 0 disables
    ema_decay: float = 0.999
    log_every: int = 100
    ckpt_every: int = 1000
    keep_checkpoints: int = 2
    tensorboard: bool = False
    progress: bool = True
    device: str = "cpu"
    threads: int = 0  # torch.set_num_threads; 0 leaves the default
    amp: str = "none"  # none | bf16 (autocast on CUDA)
    compile: bool = False  # torch.compile the trained networks
    channels_last: bool = False  # images: channels_last memory format
    fused_optimizer: bool = False  # AdamW(fused=True) on CUDA


@dataclass
class SampleConfig:
    steps: int = 100
    method: str = "em"  # em | euler | heun
    sigma: Optional[float] = None  # EM noise; None = path.sigma


@dataclass
class EvalConfig:
    n_samples: int = 5000
    max_samples: int = 2000  # W2 subsample size


@dataclass
class Config:
    method: str = "agm"  # agm | baseline (drift-only bridge matching)
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    path: PathConfig = field(default_factory=PathConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    potential: PotentialConfig = field(default_factory=PotentialConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def validate(self) -> "Config":
        """Check every value; raises ConfigError naming the field and what is accepted."""
        check_choice("method", self.method, ("agm", "baseline"))
        check_choice("model.kind", self.model.kind, ("mlp", "unet"))
        check_choice("model.parameterisation", self.model.parameterisation, ("drift", "endpoint"))
        check_choice("sample.method", self.sample.method, ("em", "euler", "heun"))
        check_choice("train.amp", self.train.amp, ("none", "bf16"))
        check_choice("potential.objective", self.potential.objective, ("nll", "regress", "kinetic"))
        check_choice("potential.sign", self.potential.sign, ("down", "up"))
        check_choice("potential.normalise", self.potential.normalise, ("batch", "time_bins"))
        for name in ("train.steps", "train.batch_size", "train.log_every", "train.ckpt_every", "sample.steps",
                     "eval.n_samples", "eval.max_samples", "data.n_train", "data.n_test", "model.hidden", "model.depth",
                     "potential.depth", "potential.time_bins", "train.keep_checkpoints"):
            check_positive(name, self.get(name), integer=True)
        for name in ("train.lr", "potential.temperature", "potential.budget"):
            check_positive(name, self.get(name))
        check_positive("path.sigma", self.path.sigma, allow_zero=True)
        check_positive("train.grad_clip", self.train.grad_clip, allow_zero=True)
        check_positive("potential.warmup_steps", self.potential.warmup_steps, integer=True, allow_zero=True)
        if not 0 <= self.train.ema_decay < 1:
            raise ConfigError(f"train.ema_decay={self.train.ema_decay!r} must be in [0, 1)")
        if not 0 < self.data.test_fraction < 1:
            raise ConfigError(f"data.test_fraction={self.data.test_fraction!r} must be in (0, 1)")
        if self.potential.budget > 1:
            raise ConfigError(f"potential.budget={self.potential.budget!r} must be in (0, 1]")
        if self.potential.clip is not None and (len(self.potential.clip) != 2 or not 0 <= self.potential.clip[0] <= 1 <= self.potential.clip[1]):
            raise ConfigError(f"potential.clip={self.potential.clip!r} must be [min, max] with 0 <= min <= 1 <= max, or null")
        if self.path.sigma > 0 and self.path.t_max >= 1:
            raise ConfigError(f"path.t_max={self.path.t_max!r} must be < 1 when path.sigma > 0")
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


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check/convert a YAML value to the dataclass field type; ConfigError naming the key otherwise."""
    origin = get_origin(tp)
    if origin is Union:
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(key, value, args[0])
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}={value!r} must be true or false")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{key}={value!r} must be an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}={value!r} must be a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}={value!r} must be a string")
        return value
    if tp is list or origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r} must be a list, e.g. [1, 2]")
        return list(value)
    return value


def _merge(obj: Any, updates: dict, prefix: str = "") -> None:
    hints = get_type_hints(type(obj))
    valid = [f.name for f in fields(obj)]
    for k, v in updates.items():
        key = f"{prefix}{k}"
        if k not in valid:
            full = [f"{prefix}{n}" for n in valid]
            raise ConfigError(f"unknown config key '{key}'{closest(key, full)}; valid keys here: {full}")
        cur = getattr(obj, k)
        if is_dataclass(cur):
            if not isinstance(v, dict):
                raise ConfigError(f"{key} must be a mapping of its fields {[f.name for f in fields(cur)]}, got {v!r}")
            _merge(cur, v, prefix=f"{key}.")
        else:
            setattr(obj, k, _coerce(key, v, hints[k]))


def all_keys(obj: Any = None, prefix: str = "") -> list[str]:
    """Every dotted key of the config (for help and error messages)."""
    obj = Config() if obj is None else obj
    out = []
    for f in fields(obj):
        v = getattr(obj, f.name)
        if is_dataclass(v):
            out += all_keys(v, f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


def parse_override(item: str) -> dict:
    """'train.lr=3e-4' -> {'train': {'lr': 0.0003}} (the value is parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value, e.g. train.steps=500")
    key, raw = item.split("=", 1)
    key = key.strip()
    keys = all_keys()
    if key not in keys:
        raise ConfigError(f"unknown config key '{key}'{closest(key, keys)}")
    value = yaml.safe_load(raw) if raw.strip() else None
    out: dict = {}
    cur = out
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def builtin_configs() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def load_config(source: str | Path | dict | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Config from a YAML path, a built-in name (see ``builtin_configs()``), a dict or None (defaults)."""
    cfg = Config()
    if isinstance(source, dict):
        _merge(cfg, source)
    elif source is not None:
        path = Path(source)
        if not path.exists():
            if str(source) in builtin_configs():
                path = BUILTIN_DIR / f"{source}.yaml"
            else:
                raise ConfigError(
                    f"config {str(source)!r} is neither a file nor a built-in config; built-in: {builtin_configs()}"
                    f"{closest(str(source), builtin_configs())}"
                )
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
        _merge(cfg, data)
    for item in overrides:
        _merge(cfg, parse_override(item))
    if cfg.data.path is not None:
        cfg.data.name = "file"
    return cfg.validate()


def save_config(cfg: Config, path: Path) -> None:
    path.write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
