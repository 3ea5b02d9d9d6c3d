"""One way to train, resume, sample and evaluate any method: a :class:`Recipe` plus the shared Trainer.

A method folder defines a Recipe subclass (its config dataclass, how to load data, how to build its
trainable networks, how to sample); these functions do the rest, identically for every method:

    train_run(recipe, cfg, out)      new run folder (refuses a non-empty one unless overwrite=True), lock,
                                     data fingerprints, config.yaml, run.json, Trainer.fit()
    resume_run(recipe, run_dir)      same lock and checks, exact continuation (see Trainer.resume)
    sample_run(recipe, run_dir, n)   EMA networks only, samples mapped back to data units, finiteness checked
    evaluate_run(recipe, run_dir)    samples vs the held-out split (or a given file), eval.json

The run-folder contract is in :mod:`agm.training.runs`; the CLI grammar ``agm <method> train|sample|eval``
is generated from the recipe by :mod:`agm.command_line`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from agm.errors import CheckpointError, ConfigError, DataError
from agm.training.checkpoint import RUN_FORMAT, RUN_VERSION, atomic_write_text, check_run_dir, latest_checkpoint, load_checkpoint, unflatten
from agm.training.config import build_config, save_config
from agm.training.devices import apply_threads, resolve_device
from agm.training.runs import RunLock, check_fingerprints, check_out_dir, check_writable_dir, fingerprint
from agm.training.trainer import Trainer, TrainableMethod


class NonFiniteSampleError(DataError):
    """A sampler produced NaN/inf values."""


@dataclass
class DataBundle:
    """What a recipe's ``load_data`` returns.

    train: training rows (N, ...) in model space, or a batch function (step, generator) -> batch.
    test: held-out rows in model space (or None). meta: JSON-able facts that ``build`` needs (shapes, sizes).
    files: user data paths (fingerprinted so that a resume refuses changed data).
    transform: the fitted :class:`agm.data.transforms.DataTransform` (None: data used as is).
    """

    train: Any
    test: Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    transform: Any = None


class Recipe:
    """A method's train/sample/eval, in terms of the shared machinery. Subclasses set the attributes and
    implement ``load_data``, ``build`` and ``sample``; ``evaluate`` defaults to :func:`agm.metrics.evaluate`."""

    name: str = ""
    config_cls: type = None  # type: ignore[assignment]
    builtin_dir: Path | None = None
    default_config: str | None = None
    description: str = ""
    #: extra ``sample`` options: {name: (type, default, help)}; passed to ``sample`` as keyword arguments
    sample_options: dict[str, tuple[type, Any, str]] = {}
    #: dotted config keys that name user data files or folders: made absolute before config.yaml is written
    #: (so ``--resume`` works from any directory); their files are fingerprinted by ``train_run``
    data_path_keys: tuple[str, ...] = ("data.path",)

    # ---- config -------------------------------------------------------------------------------------
    def load_config(self, source: str | Path | dict | None = None, overrides: list[str] | tuple = ()) -> Any:
        if source is None:
            source = self.default_config
        return build_config(self.config_cls, source, overrides, self.builtin_dir)

    def config_from_run(self, run_dir: Path) -> Any:
        path = Path(run_dir) / "config.yaml"
        if not path.exists():
            raise CheckpointError(f"run directory {run_dir} has no config.yaml")
        return build_config(self.config_cls, str(path))

    # ---- the method -----------------------------------------------------------------------------------
    def load_data(self, cfg: Any) -> DataBundle:
        raise NotImplementedError

    def build(self, cfg: Any, meta: dict[str, Any]) -> TrainableMethod:
        raise NotImplementedError

    def lrs(self, cfg: Any) -> dict[str, float] | None:
        return None

    def sampler_networks(self, cfg: Any, meta: dict[str, Any]) -> dict[str, nn.Module]:
        """The networks sampling needs (default: the method's EMA networks). Override to avoid building the rest."""
        method = self.build(cfg, meta)
        nets = method.networks()
        return {name: nets[name] for name in method.ema_names}

    def sample(self, nets: dict[str, nn.Module], cfg: Any, meta: dict[str, Any], n: int, *, generator: torch.Generator,
               device: torch.device, **options: Any) -> Tensor:
        raise NotImplementedError

    def evaluate(self, cfg: Any, samples: Tensor, reference: Tensor, meta: dict[str, Any], seed: int = 0) -> dict[str, float]:
        from agm.metrics import evaluate

        max_samples = getattr(getattr(cfg, "eval", None), "max_samples", 2000)
        return evaluate(samples, reference, max_samples=max_samples, seed=seed)

    def eval_samples(self, cfg: Any) -> int:
        return int(getattr(getattr(cfg, "eval", None), "n_samples", 5000))

    def run_info(self, cfg: Any, method: TrainableMethod, data: DataBundle) -> dict[str, Any]:
        """Extra entries for run.json (e.g. parameter counts)."""
        return {}


def get_key(cfg: Any, dotted: str, default: Any = None) -> Any:
    """The value of a dotted key of a config dataclass (``default`` when a part is missing)."""
    obj = cfg
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return default
        obj = getattr(obj, part)
    return obj


def set_key(cfg: Any, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    obj = cfg
    for part in parts[:-1]:
        obj = getattr(obj, part)
    setattr(obj, parts[-1], value)


def absolute_data_paths(recipe: Recipe, cfg: Any) -> list[str]:
    """Rewrite each of ``recipe.data_path_keys`` that is set to an absolute path (``~`` expanded, symlinks
    resolved) in ``cfg``, in place; returns the absolute paths. A resume from another directory then finds
    the same files, and the fingerprints name them unambiguously."""
    out = []
    for key in recipe.data_path_keys:
        value = get_key(cfg, key)
        if isinstance(value, (str, os.PathLike)) and str(value):
            absolute = str(Path(value).expanduser().resolve())
            set_key(cfg, key, absolute)
            out.append(absolute)
    return out


def _count(nets: dict[str, nn.Module]) -> int:
    return sum(p.numel() for net in nets.values() for p in net.parameters())


# ---- train / resume ----------------------------------------------------------------------------------------
def _make_trainer(recipe: Recipe, cfg: Any, out_dir: Path, data: DataBundle) -> Trainer:
    device = resolve_device(cfg.train.device)
    torch.manual_seed(cfg.seed)  # network initialisation from the run's seed (torch's own start seed varies by process)
    method = recipe.build(cfg, data.meta)
    apply_threads(cfg.train.threads, device, _count(method.networks()))
    if isinstance(method, nn.Module):
        method.to(device)
    else:
        for net in method.networks().values():
            net.to(device)
    tcfg = dataclasses.replace(cfg.train, device=str(device))
    return Trainer(method, data.train, tcfg, out_dir=out_dir, seed=cfg.seed, lrs=recipe.lrs(cfg))


def train_run(recipe: Recipe, cfg: Any, out_dir: str | Path, *, overwrite: bool = False, data: DataBundle | None = None) -> dict[str, Any]:
    """Train a new run of ``recipe`` into ``out_dir``; returns run.json's content.

    Under ``torchrun`` (WORLD_SIZE > 1) every rank joins the process group, trains with DDP, and rank 0 alone
    writes the folder (``train.batch_size`` is the global batch).
    """
    from agm.training.distributed import barrier, init_distributed

    out_dir = Path(out_dir)
    ctx = init_distributed(str(resolve_device(cfg.train.device)))
    if ctx.is_main:
        check_out_dir(out_dir, overwrite=overwrite)
    barrier(ctx)
    lock = RunLock(out_dir).acquire() if ctx.is_main else None
    try:
        cfg = _copy_config(cfg)
        absolute_data_paths(recipe, cfg)
        data = recipe.load_data(cfg) if data is None else data
        files = list(dict.fromkeys(str(Path(f).expanduser().resolve()) for f in data.files))
        trainer = _make_trainer(recipe, cfg, out_dir, data)
        info = {
            "format": RUN_FORMAT,
            "version": RUN_VERSION,
            "method": recipe.name,
            "meta": data.meta,
            "data_shape": data.meta.get("data_shape"),
            "fingerprints": [fingerprint(f) for f in files],
            "world_size": ctx.world_size,
            "machine": _machine(),
            **recipe.run_info(cfg, trainer.method, data),
        }
        if ctx.is_main:
            save_config(cfg, out_dir / "config.yaml")
            atomic_write_text(out_dir / "run.json", json.dumps(info, indent=1))
            if data.transform is not None:
                atomic_write_text(out_dir / "data_transform.json", json.dumps(data.transform.to_dict(), indent=1))
            if data.test is not None:
                from safetensors.torch import save_file

                save_file({"test": data.test.contiguous()}, str(out_dir / "test_data.safetensors"))
        barrier(ctx)
        trainer.fit()
        return info
    finally:
        if lock is not None:
            lock.release()


def _copy_config(cfg: Any) -> Any:
    """A deep copy of a config dataclass (the caller's object is left as it was)."""
    import copy

    return copy.deepcopy(cfg)


def read_run(run_dir: str | Path, recipe: Recipe | None = None) -> dict[str, Any]:
    """run.json of a run folder, checked to be a run of ``recipe`` when given."""
    info = check_run_dir(Path(run_dir))
    got = info.get("method", "agm")
    if recipe is not None and got != recipe.name:
        raise CheckpointError(f"{run_dir} is a run of method {got!r}, not {recipe.name!r}; use 'agm {got} ...'")
    return info


def resume_run(recipe: Recipe, run_dir: str | Path, steps: int | None = None) -> int:
    """Continue a run from its newest intact checkpoint (or from step 0 if it has none) to cfg.train.steps
    (or ``steps``). Refuses changed data files. On the CPU the result equals an uninterrupted run bit for bit."""
    from agm.training.distributed import init_distributed

    run_dir = Path(run_dir)
    info = read_run(run_dir, recipe)
    cfg = recipe.config_from_run(run_dir)
    if steps is not None:
        cfg.train.steps = steps
    check_fingerprints(info.get("fingerprints", []))
    ctx = init_distributed(str(resolve_device(cfg.train.device)))
    lock = RunLock(run_dir).acquire() if ctx.is_main else None
    try:
        data = recipe.load_data(cfg)
        trainer = _make_trainer(recipe, cfg, run_dir, data)
        trainer.resume()
        trainer.fit()
        return trainer.step
    finally:
        if lock is not None:
            lock.release()


# ---- sample / evaluate --------------------------------------------------------------------------------------
def load_transform(run_dir: str | Path):
    """The run's fitted data transform, or None."""
    from agm.data.transforms import DataTransform

    path = Path(run_dir) / "data_transform.json"
    return DataTransform.from_dict(json.loads(path.read_text())) if path.exists() else None


def load_networks(recipe: Recipe, run_dir: str | Path, device: str | torch.device = "cpu", *,
                  step: int | None = None) -> tuple[dict[str, nn.Module], Any, dict[str, Any]]:
    """The networks sampling needs, from the newest checkpoint (or the kept checkpoint of training step ``step``;
    EMA weights where kept), in eval mode."""
    run_dir = Path(run_dir)
    info = read_run(run_dir, recipe)
    cfg = recipe.config_from_run(run_dir)
    meta = info.get("meta") or {"data_shape": info.get("data_shape")}
    nets = recipe.sampler_networks(cfg, meta)
    from agm.training.checkpoint import checkpoint_candidates, read_state

    if step is not None:
        kept_steps = {int(p.name.split("-")[1]): p for p in checkpoint_candidates(run_dir)}
        if step not in kept_steps:
            raise CheckpointError(f"run {run_dir} keeps no checkpoint of step {step}; kept steps: {sorted(kept_steps)} "
                                  "(train.keep_checkpoints sets how many are kept)")
        ckpt = kept_steps[step]
    else:
        try:
            ckpt = latest_checkpoint(run_dir)
        except CheckpointError:
            raise CheckpointError(f"run {run_dir} has no checkpoint yet; train it further ('--resume {run_dir}') before sampling") from None

    kept = read_state(ckpt).get("ema", [])
    parts = ("ema",) if all(name in kept for name in nets) else ("networks", "ema")
    state, files = load_checkpoint(ckpt, parts=parts)
    for name, net in nets.items():
        source = "ema" if name in kept else "networks"
        sd = unflatten(files[source], name)
        if not sd:
            raise CheckpointError(f"checkpoint {ckpt} has no network {name!r}")
        try:
            net.load_state_dict(sd)
        except RuntimeError as e:
            raise CheckpointError(f"network {name!r} in {ckpt} does not match the run's config.yaml: {e}") from None
        net.to(device).eval()
    return nets, cfg, meta


def check_finite_samples(x: Tensor, what: str = "samples") -> Tensor:
    bad = (~torch.isfinite(x.reshape(x.shape[0], -1))).any(1)
    if bool(bad.any()):
        raise NonFiniteSampleError(
            f"{int(bad.sum())} of {x.shape[0]} {what} are NaN/inf; the sampler diverged (try more sampling steps, a "
            f"smaller step size, or a longer-trained model)"
        )
    return x


def sample_run(recipe: Recipe, run_dir: str | Path, n: int, *, seed: int = 0, device: str = "auto", **options: Any) -> Tensor:
    """``n`` samples of a run, in data units (the run's transform inverted). NonFiniteSampleError on NaN/inf."""
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ConfigError(f"n={n!r} must be an integer > 0")
    dev = resolve_device(device, "--device")
    nets, cfg, meta = load_networks(recipe, run_dir, dev)
    apply_threads(getattr(getattr(cfg, "train", None), "threads", 0), dev, _count(nets))  # the same thread rule as training
    g = torch.Generator(device=dev).manual_seed(int(seed))
    with torch.no_grad():
        x = recipe.sample(nets, cfg, meta, n, generator=g, device=dev, **options)
    x = check_finite_samples(x)
    tr = load_transform(run_dir)
    return tr.inverse(x.cpu()) if tr is not None else x


def evaluate_run(recipe: Recipe, run_dir: str | Path, data_path: str | None = None, *, n: int | None = None, seed: int = 0,
                 device: str = "auto", write: bool = True, **options: Any) -> dict[str, float]:
    """Metrics of the run's samples against its held-out split (or the file ``data_path``), in data units;
    writes eval.json in the run folder (checked writable before anything is computed)."""
    from agm.data.files import load_array

    run_dir = Path(run_dir)
    read_run(run_dir, recipe)
    if write:
        try:
            check_writable_dir(run_dir, "--run")
        except ConfigError as e:
            raise ConfigError(f"{e}: eval.json could not be written there, so nothing was computed") from None
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
        raise ConfigError(f"--n={n!r} must be an integer > 0")
    cfg = recipe.config_from_run(run_dir)
    tr = load_transform(run_dir)
    if data_path is not None:
        ref = load_array(data_path)
    else:
        path = run_dir / "test_data.safetensors"
        if not path.exists():
            raise ConfigError(f"run {run_dir} kept no held-out split; pass --data FILE to evaluate against")
        from safetensors.torch import load_file

        ref = load_file(str(path))["test"]
        if tr is not None:
            ref = tr.inverse(ref)
    x = sample_run(recipe, run_dir, n or recipe.eval_samples(cfg), seed=seed, device=device, **options)
    if x.shape[1:] != ref.shape[1:]:
        raise ConfigError(f"--data has samples of shape {tuple(ref.shape[1:])}, the run generates {tuple(x.shape[1:])}")
    meta = read_run(run_dir).get("meta") or {}
    metrics = recipe.evaluate(cfg, x.cpu(), ref, meta, seed=seed)
    if write:
        atomic_write_text(run_dir / "eval.json", json.dumps(metrics, indent=1))
    return metrics


def _machine() -> dict[str, Any]:
    from agm.training.results import machine_info

    return machine_info()


__all__ = ["Recipe", "DataBundle", "NonFiniteSampleError", "train_run", "resume_run", "sample_run", "evaluate_run",
           "load_networks", "load_transform", "read_run", "resolve_device", "apply_threads", "check_finite_samples"]
