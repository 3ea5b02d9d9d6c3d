"""Run directories: train from a config, resume, sample from the EMA drift, evaluate.

These functions are what the ``agm`` CLI calls; they are also the library's high-level API:

    cfg = load_config("toy", ["method=baseline"])
    train(cfg, "runs/base")            # or resume("runs/base")
    x = sample_run("runs/base", n=1000)
    evaluate_run("runs/base")
"""
from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from agm.config import Config, load_config, save_config
from agm.errors import CheckpointError, ConfigError
from agm.methods.agm import build_drift, build_method, generate
from agm.training.checkpoint import RUN_FORMAT, RUN_VERSION, atomic_write_text, check_run_dir, load_ema_network
from agm.training.trainer import Trainer


def load_data(cfg: Config) -> tuple[Tensor, Tensor]:
    """(train, test) tensors for cfg.data: a built-in set drawn from the seed, or a user file split by the seed."""
    from agm.data.files import load_array, split
    from agm.data.toy import make_toy

    if _is_image_data(cfg):
        from agm.data.images import load_image_data

        return load_image_data(cfg.data, seed=cfg.seed)
    if cfg.data.name == "file" or cfg.data.path is not None:
        if cfg.data.path is None:
            raise ConfigError("data.name='file' needs data.path (a .npy or .csv file of shape (N, D))")
        x = load_array(cfg.data.path)
        return split(x, cfg.data.test_fraction, seed=cfg.seed)
    train = make_toy(cfg.data.name, cfg.data.n_train, seed=cfg.seed)
    test = make_toy(cfg.data.name, cfg.data.n_test, seed=cfg.seed + 10_000)
    return train, test


def _is_image_data(cfg: Config) -> bool:
    """Image sets: a built-in image set name, a folder, or an .npz file (see agm.data.images)."""
    try:
        from agm.data.images import IMAGE_SETS
    except ImportError:
        return False
    path = cfg.data.path
    if cfg.data.name in IMAGE_SETS:
        return True
    return path is not None and (Path(path).is_dir() or Path(path).suffix == ".npz")


def _setup(cfg: Config, out_dir: Path, data: Tensor) -> Trainer:
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)  # network initialisation from the run's seed (torch's own start seed varies by process)
    method, _ = build_method(cfg, tuple(data.shape[1:]))
    method.to(cfg.train.device)
    lrs = {"potential": cfg.potential.lr} if (cfg.method == "agm" and cfg.potential.lr is not None) else None
    return Trainer(method, data, cfg.train, out_dir=out_dir, seed=cfg.seed, lrs=lrs)


def train(cfg: Config, out_dir: str | Path, *, data: tuple[Tensor, Tensor] | None = None) -> dict[str, Any]:
    """Train a new run into ``out_dir`` (must be empty or absent). Returns run.json's content.

    Under ``torchrun`` (WORLD_SIZE > 1) this joins the process group (NCCL on CUDA, gloo on the CPU) and
    trains with DDP: ``train.batch_size`` is the global batch, rank 0 alone writes the run directory
    (see :mod:`agm.training.distributed`). ``torchrun --nproc_per_node N -m agm.cli train ...`` uses it.
    """
    from agm.training.distributed import barrier, init_distributed

    ctx = init_distributed(cfg.train.device)
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):  # every rank checks before rank 0 writes anything
        raise ConfigError(f"--out {out_dir} already exists and is not empty; use 'agm train --resume {out_dir}' or a new directory")
    barrier(ctx)
    train_x, test_x = load_data(cfg) if data is None else data
    trainer = _setup(cfg, out_dir, train_x)
    nets = trainer.method.networks()
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    info = {
        "format": RUN_FORMAT,
        "version": RUN_VERSION,
        "data_shape": list(train_x.shape[1:]),
        "n_train": int(train_x.shape[0]),
        "potential_param_ratio": count(nets["potential"]) / count(nets["drift"]) if "potential" in nets else None,
        "drift_params": count(nets["drift"]),
        "world_size": ctx.world_size,
        "machine": {"platform": platform.platform(), "torch": torch.__version__},
    }
    if ctx.is_main:
        from safetensors.torch import save_file

        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
        atomic_write_text(out_dir / "run.json", json.dumps(info, indent=1))
        save_file({"test": test_x.contiguous()}, str(out_dir / "test_data.safetensors"))
    barrier(ctx)
    trainer.fit()
    return info


def load_run_config(run_dir: str | Path) -> Config:
    run_dir = Path(run_dir)
    check_run_dir(run_dir)
    path = run_dir / "config.yaml"
    if not path.exists():
        raise CheckpointError(f"run directory {run_dir} has no config.yaml")
    return load_config(path)


def resume(run_dir: str | Path, steps: int | None = None) -> int:
    """Continue a run from its latest checkpoint to cfg.train.steps (or ``steps``); the loss sequence
    equals an uninterrupted run's on CPU. Returns the final step."""
    from agm.training.distributed import init_distributed

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if steps is not None:
        cfg.train.steps = steps
    init_distributed(cfg.train.device)
    train_x, _ = load_data(cfg)
    trainer = _setup(cfg, run_dir, train_x)
    trainer.resume()
    trainer.fit()
    return trainer.step


def load_sampler_drift(run_dir: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, Config, list[int]]:
    """The EMA drift of a run (V_phi is neither loaded nor built), its config and data shape."""
    run_dir = Path(run_dir)
    info = check_run_dir(run_dir)
    cfg = load_run_config(run_dir)
    shape = info["data_shape"]
    drift = build_drift(cfg, shape)
    try:
        drift.load_state_dict(load_ema_network(run_dir, "drift"))
    except RuntimeError as e:
        raise CheckpointError(f"EMA drift in {run_dir} does not match its config.yaml: {e}") from None
    return drift.to(device).eval(), cfg, shape


def sample_run(run_dir: str | Path, n: int, *, steps: int | None = None, method: str | None = None, seed: int = 0, device: str = "cpu") -> Tensor:
    """n samples from a run's EMA drift with Euler-Maruyama (or the ODE sampler for sigma = 0)."""
    if not isinstance(n, int) or n <= 0:
        raise ConfigError(f"n={n!r} must be an integer > 0")
    drift, cfg, shape = load_sampler_drift(run_dir, device)
    steps = cfg.sample.steps if steps is None else steps
    if not isinstance(steps, int) or steps <= 0:
        raise ConfigError(f"steps={steps!r} must be an integer > 0")
    sigma = cfg.path.sigma if cfg.sample.sigma is None else cfg.sample.sigma
    g = torch.Generator(device=device).manual_seed(seed)
    return generate(drift, n, shape, sigma=sigma, steps=steps, method=method or cfg.sample.method, generator=g, device=device)


def evaluate_run(run_dir: str | Path, data_path: str | None = None, *, n: int | None = None, seed: int = 0) -> dict[str, float]:
    """Metrics of the run's samples against held-out data (or a given file); writes eval.json in the run."""
    from agm.data.files import load_array
    from agm.metrics import evaluate
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if data_path is not None:
        ref = load_array(data_path)
    else:
        ref = load_file(str(run_dir / "test_data.safetensors"))["test"]
    n = n or cfg.eval.n_samples
    x = sample_run(run_dir, n, seed=seed)
    if x.shape[1:] != ref.shape[1:]:
        raise ConfigError(f"--data has samples of shape {tuple(ref.shape[1:])}, the run generates {tuple(x.shape[1:])}")
    metrics = evaluate(x, ref, max_samples=cfg.eval.max_samples, seed=seed)
    atomic_write_text(run_dir / "eval.json", json.dumps(metrics, indent=1))
    return metrics
