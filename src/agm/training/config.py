"""Configuration machinery shared by every method: typed nested dataclasses, YAML, ``key=value`` overrides.

A method's config is one dataclass (with nested dataclasses for its groups); it is at once the method's
defaults, its YAML schema and its command-line options (see :mod:`agm.cli`). Unknown keys raise
:class:`~agm.errors.ConfigError` naming the closest valid key; values are type-checked against the field types.
:class:`TrainConfig` is the one set of training-loop options that every method's config embeds as ``train``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

import yaml

from agm.errors import ConfigError, closest


@dataclass
class TrainConfig:
    steps: int = 3000
    batch_size: int = 256
    lr: float = 1e-3
    schedule: str = "constant"  # learning-rate schedule over train.steps: constant | cosine (to 0) | linear (to 0)
    warmup_steps: int = 0  # linear learning-rate warm-up from 0 over this many steps
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # per network; 0 disables
    ema_decay: float = 0.999
    ema_warmup: bool = False  # EMA decay min(ema_decay, (1 + k) / (10 + k)) at update k: short runs need no lower ema_decay
    log_every: int = 100
    ckpt_every: int = 1000
    keep_checkpoints: int = 2
    tensorboard: bool = True  # event files under tb/ when the tensorboard package is installed
    progress: bool = True  # a tqdm bar on a terminal; periodic plain log lines otherwise
    device: str = "auto"  # auto (CUDA when present, else CPU) | cpu | cuda | cuda:N
    threads: int = 0  # torch intra-op threads; 0 = auto (1 for small models on the CPU, else torch's default)
    amp: str = "none"  # none | bf16 (autocast on CUDA)
    compile: bool = False  # torch.compile the trained networks
    compile_mode: str = "default"  # torch.compile mode: default | reduce-overhead (CUDA graphs: launch-bound small nets) | max-autotune | max-autotune-no-cudagraphs
    compile_scope: str = "modules"  # what train.compile compiles: modules (each trained network) | loss (the method's whole loss function: one graph, one backward)
    channels_last: bool = False  # images: channels_last memory format
    fused_optimizer: bool = False  # AdamW(fused=True), CUDA and CPU (rounding-level differences); off: foreach on the CPU, bit-identical to the for-loop
    nan_check_every: int = 0  # NaN/inf loss guard: 0 = auto (every step on the CPU, every 50 on CUDA: no per-step sync)

    def validate(self, prefix: str = "train") -> "TrainConfig":
        """Check every training-loop option; ConfigError naming ``<prefix>.<field>`` and what is accepted.

        Called for the ``train`` group of every method's config by :func:`build_config`, so a method's own
        ``validate`` checks only its own keys (plus any stricter rule of its own, e.g. batch_size >= 2).
        """
        from agm.errors import check_choice, check_positive

        for name in ("steps", "batch_size", "log_every", "ckpt_every", "keep_checkpoints"):
            check_positive(f"{prefix}.{name}", getattr(self, name), integer=True)
        for name in ("warmup_steps", "threads", "nan_check_every"):
            check_positive(f"{prefix}.{name}", getattr(self, name), integer=True, allow_zero=True)
        check_positive(f"{prefix}.lr", self.lr)
        check_positive(f"{prefix}.weight_decay", self.weight_decay, allow_zero=True)
        check_positive(f"{prefix}.grad_clip", self.grad_clip, allow_zero=True)
        if not 0 <= self.ema_decay < 1:
            raise ConfigError(f"{prefix}.ema_decay={self.ema_decay!r} must be in [0, 1)")
        check_choice(f"{prefix}.amp", self.amp, ("none", "bf16"))
        check_choice(f"{prefix}.schedule", self.schedule, ("constant", "cosine", "linear"))
        check_choice(f"{prefix}.compile_mode", self.compile_mode,
                     ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"))
        check_choice(f"{prefix}.compile_scope", self.compile_scope, ("modules", "loss"))
        return self


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
        if isinstance(value, str):  # YAML 1.1 reads 3e-3 (no dot) as a string: accept what float() accepts
            try:
                value = float(value)
            except ValueError:
                pass
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
        args = get_args(tp)
        if args and args[0] in (int, float, str, bool):
            return [_coerce(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
        return list(value)
    return value


def _element_type(default: Any) -> type | None:
    """The element type of a bare ``list`` field, read from its non-empty, uniform default (``[1, 2, 2]`` -> int)."""
    if not isinstance(default, list) or not default:
        return None
    kinds = {type(v) for v in default}
    if len(kinds) == 1 and next(iter(kinds)) in (int, float, str, bool):
        return next(iter(kinds))
    if kinds <= {int, float} and float in kinds:
        return float
    return None


def merge(obj: Any, updates: dict, prefix: str = "") -> None:
    """Merge a nested mapping into the dataclass ``obj`` in place, type-checking every value."""
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
            merge(cur, v, prefix=f"{key}.")
        else:
            tp = hints[k]
            optional = get_origin(tp) is Union and type(None) in get_args(tp)
            inner = [a for a in get_args(tp) if a is not type(None)][0] if optional else tp
            if inner is list:  # a bare ``list``: its elements must have the type of the default's elements
                f = next(f for f in fields(obj) if f.name == k)
                base = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
                elem = _element_type(base)
                if elem is not None:
                    tp = Optional[list[elem]] if optional else list[elem]
            setattr(obj, k, _coerce(key, v, tp))


def all_keys(obj: Any, prefix: str = "") -> list[str]:
    """Every dotted key of the config dataclass ``obj`` (for help and error messages)."""
    out = []
    for f in fields(obj):
        v = getattr(obj, f.name)
        if is_dataclass(v):
            out += all_keys(v, f"{prefix}{f.name}.")
        else:
            out.append(f"{prefix}{f.name}")
    return out


def key_table(obj: Any, prefix: str = "") -> list[tuple[str, str, Any]]:
    """(dotted key, type name, default) for every leaf of ``obj``: what ``agm <method> train --help`` lists."""
    hints = get_type_hints(type(obj))
    out = []
    for f in fields(obj):
        v = getattr(obj, f.name)
        if is_dataclass(v):
            out += key_table(v, f"{prefix}{f.name}.")
        else:
            tp = hints[f.name]
            args = [a for a in get_args(tp) if a is not type(None)]
            if get_origin(tp) is Union and args:
                name = f"{getattr(args[0], '__name__', args[0])} or null"
            else:
                name = getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
            out.append((f"{prefix}{f.name}", name, v))
    return out


def parse_override(item: str, keys: list[str]) -> dict:
    """'train.lr=3e-4' -> {'train': {'lr': 0.0003}} (the value is parsed as YAML); ``keys``: the valid dotted keys."""
    if "=" not in item:
        raise ConfigError(f"override {item!r} must look like key=value, e.g. train.steps=500")
    key, raw = item.split("=", 1)
    key = key.strip()
    if key not in keys:
        raise ConfigError(f"unknown config key '{key}'{closest(key, keys)}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"{key}={raw!r} is not a valid value: {e}") from None
    out: dict = {}
    cur = out
    parts = key.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value
    return out


def read_yaml_mapping(source: str | Path, builtin_dir: Path | None = None) -> dict:
    """The mapping in a YAML file, or in ``builtin_dir/<source>.yaml`` when ``source`` names a built-in config."""
    path = Path(source)
    if not path.exists():
        names = sorted(p.stem for p in builtin_dir.glob("*.yaml")) if builtin_dir is not None else []
        if str(source) in names:
            path = builtin_dir / f"{source}.yaml"
        else:
            raise ConfigError(
                f"config {str(source)!r} is neither a file nor a built-in config; built-in: {names}{closest(str(source), names)}"
            )
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(data).__name__}")
    return data


def build_config(cls: type, source: str | Path | dict | None = None, overrides: list[str] | tuple = (),
                 builtin_dir: Path | None = None, *, validate: bool = True) -> Any:
    """An instance of the config dataclass ``cls``: defaults, then a YAML file / built-in name / dict, then overrides.

    Calls ``validate()`` on the result when the class defines it (and ``validate`` is true).
    """
    cfg = cls()
    if isinstance(source, dict):
        merge(cfg, source)
    elif source is not None:
        merge(cfg, read_yaml_mapping(source, builtin_dir))
    keys = all_keys(cfg)
    for item in overrides:
        merge(cfg, parse_override(item, keys))
    return validate_config(cfg) if validate else cfg


def validate_config(cfg: Any) -> Any:
    """Validate the nested groups that know how to check themselves (e.g. ``train: TrainConfig``), then the root."""
    for f in fields(cfg):
        group = getattr(cfg, f.name)
        if is_dataclass(group) and hasattr(group, "validate"):
            group.validate(f.name)
    return cfg.validate() if hasattr(cfg, "validate") else cfg


def config_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg: Any, path: Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    from agm.training.checkpoint import atomic_write_text

    atomic_write_text(Path(path), yaml.safe_dump(config_dict(cfg), sort_keys=False))
