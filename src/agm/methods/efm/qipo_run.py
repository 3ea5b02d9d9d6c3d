"""``agm qipo train|eval``: a QIPO run folder, killable and resumable (arXiv 2503.04975, Algorithm 2).

The run folder follows the core's contract (agm.training.runs): run.json, config.yaml, metrics.jsonl,
checkpoints/, a lock while a process writes, a fingerprint of the data file (a resume refuses changed data),
a non-empty --out refused unless overwrite. The three phases are step ranges of one Trainer (agm.methods.efm.qipo),
so ``--resume DIR`` continues from the newest checkpoint in whichever phase it was, bit-identically on the CPU.
The Trainer is built here (not by agm.training.recipe.train_run) because QIPO's Q target network is the Trainer's
EMA of Q, which the method must be bound to once the Trainer exists.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from agm.errors import CheckpointError, ConfigError
from agm.methods.efm.config import QIPO_BUILTIN_DIR, QIPOConfig

METHOD = "qipo"


def load_qipo_config(source: Any = None, overrides: list[str] | tuple = ()) -> QIPOConfig:
    """Defaults, then ``source`` (a YAML file, a dict, or a built-in name: ``qipo_v1`` = the original
    defaults, before the tuned v2 setting), then ``key=value`` overrides."""
    from agm.training.config import build_config

    return build_config(QIPOConfig, source, overrides, QIPO_BUILTIN_DIR)


def resolve_env(cfg: QIPOConfig, data) -> tuple[str, list[float], list[float]]:
    """(env id, action low, action high) of the run: data.env or the data set's meta env_id, checked against the data."""
    import gymnasium as gym

    from agm.data.offline import check_env_compatible

    env_id = cfg.data.env or data.meta.get("env_id")
    if env_id is None:
        raise ConfigError("data.env (--env) is required: the data set has no meta env_id; accepted: a gymnasium env id")
    try:
        env = gym.make(env_id)
    except Exception as err:  # gymnasium raises several types for unknown / uninstallable envs
        raise ConfigError(f"data.env={env_id!r} cannot be created here ({type(err).__name__}: {err})") from err
    try:
        check_env_compatible(data, env)
        return env_id, env.action_space.low.tolist(), env.action_space.high.tolist()
    finally:
        env.close()


def _build(cfg: QIPOConfig):
    from agm.data.offline import load_offline_dataset
    from agm.methods.efm.qipo import QIPO

    if cfg.data.path is None:
        raise ConfigError("data.path (--data) is required: an offline data set (.npz, D4RL .hdf5, Minari file or folder)")
    data = load_offline_dataset(cfg.data.path)
    env_id, low, high = resolve_env(cfg, data)
    return QIPO(data, cfg, low, high), env_id


def _trainer(algo, out_dir: Path):
    from agm.methods.efm.qipo import make_trainer
    from agm.training.devices import apply_threads

    apply_threads(algo.cfg.train.threads, torch.device("cpu"), sum(p.numel() for n in algo.networks().values() for p in n.parameters()))
    return make_trainer(algo, out_dir)


def train_qipo(cfg: QIPOConfig, out_dir: str | Path, *, overwrite: bool = False) -> dict[str, Any]:
    """A new QIPO run in ``out_dir`` (refused when non-empty unless ``overwrite``); returns run.json's content."""
    from agm.training.checkpoint import RUN_FORMAT, RUN_VERSION, atomic_write_text
    from agm.training.config import save_config
    from agm.training.results import machine_info
    from agm.training.runs import RunLock, check_out_dir, fingerprint

    out_dir = Path(out_dir)
    check_out_dir(out_dir, overwrite=overwrite)
    with RunLock(out_dir):
        if cfg.data.path is not None:
            cfg.data.path = str(Path(cfg.data.path).expanduser().resolve())
        algo, env_id = _build(cfg)
        info = {"format": RUN_FORMAT, "version": RUN_VERSION, "method": METHOD, "env": env_id,
                "meta": {"obs_dim": algo.data.obs_dim, "act_dim": algo.data.act_dim, "action_low": algo.scaler.low.tolist(),
                         "action_high": algo.scaler.high.tolist(), "transitions": len(algo.data), "phase_ends": list(cfg.phase_ends)},
                "fingerprints": [fingerprint(cfg.data.path)], "machine": machine_info()}
        save_config(cfg, out_dir / "config.yaml")
        atomic_write_text(out_dir / "run.json", json.dumps(info, indent=1))
        trainer = _trainer(algo, out_dir)
        trainer.fit()
    return info


def read_qipo_run(run_dir: str | Path) -> tuple[dict[str, Any], QIPOConfig]:
    from agm.training.recipe import read_run

    run_dir = Path(run_dir)
    info = read_run(run_dir)
    if info.get("method") != METHOD:
        raise CheckpointError(f"{run_dir} is a run of method {info.get('method')!r}, not 'qipo'")
    path = run_dir / "config.yaml"
    if not path.exists():
        raise CheckpointError(f"run directory {run_dir} has no config.yaml")
    return info, load_qipo_config(str(path))


def resume_qipo(run_dir: str | Path) -> int:
    """Continue a QIPO run from its newest intact checkpoint (any phase); returns the final step."""
    from agm.training.runs import RunLock, check_fingerprints

    run_dir = Path(run_dir)
    info, cfg = read_qipo_run(run_dir)
    check_fingerprints(info.get("fingerprints", []))
    with RunLock(run_dir):
        algo, _ = _build(cfg)
        trainer = _trainer(algo, run_dir)
        trainer.resume()
        trainer.fit()
        return trainer.step


def load_qipo(run_dir: str | Path):
    """The trained QIPO of a run (policy, Q and tables from its newest checkpoint; data set reloaded), its env id."""
    from agm.training.checkpoint import latest_checkpoint, load_checkpoint, unflatten

    info, cfg = read_qipo_run(run_dir)
    algo, env_id = _build(cfg)
    try:
        ckpt = latest_checkpoint(Path(run_dir))
    except CheckpointError:
        raise CheckpointError(f"run {run_dir} has no checkpoint yet; continue it with --resume {run_dir}") from None
    _, files = load_checkpoint(ckpt, parts=("networks",))
    for name, net in algo.networks().items():
        net.load_state_dict(unflatten(files["networks"], name))
    return algo, env_id, info


def evaluate_qipo(run_dir: str | Path, *, episodes: int | None = None, best_of: int | None = None, seed: int | None = None,
                  write: bool = True) -> dict[str, Any]:
    """Returns of the run's policy in its environment (and D4RL-normalised scores when the data set has reference
    returns); writes eval.json in the run folder."""
    import os

    import numpy as np

    from agm.methods.efm.behaviour import normalized_score
    from agm.methods.efm.evaluate import evaluate_policy
    from agm.training.checkpoint import atomic_write_text

    run_dir = Path(run_dir)
    if write and not os.access(run_dir, os.W_OK):
        raise ConfigError(f"run folder {run_dir} is not writable, so eval.json cannot be written")
    algo, env_id, info = load_qipo(run_dir)
    cfg = algo.cfg
    episodes = cfg.eval.episodes if episodes is None else episodes
    seed = cfg.eval.seed if seed is None else seed
    best_of = cfg.best_of if best_of is None else best_of
    returns = evaluate_policy(lambda o: algo.act(o, best_of=best_of), env_id, episodes, seed=seed)
    res = {"env": env_id, "episodes": episodes, "seed": seed, "best_of": best_of, "returns": returns,
           "return_mean": float(np.mean(returns))}
    meta = algo.data.meta
    if meta.get("ref_expert_return") is not None:
        res["score_mean"] = float(np.mean(normalized_score(np.asarray(returns), meta["ref_random_return"], meta["ref_expert_return"])))
    if write:
        atomic_write_text(run_dir / "eval.json", json.dumps(res, indent=1))
    return res


__all__ = ["load_qipo_config", "train_qipo", "resume_qipo", "load_qipo", "evaluate_qipo", "read_qipo_run"]
