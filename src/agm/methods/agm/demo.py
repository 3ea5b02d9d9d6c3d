"""`agm demo`: drift-only bridge matching vs AGM, same seed and budget, on a built-in 2-D set.

Writes DIR/metrics.json ({'baseline': {...}, 'agm': {...}, 'potential_param_ratio': r, ...}), plots
(samples vs data, V_phi over the plane at several t, histogram of the importance weights) and
prints a comparison table.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from agm.methods.agm.config import load_config
from agm.methods.agm.run import evaluate_run, load_data, sample_run, train


def _plots(out: Path, data: torch.Tensor, samples: dict[str, torch.Tensor], agm_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agm.methods.agm.model import build_method
    from agm.methods.agm.run import load_run_config
    from agm.training.checkpoint import latest_checkpoint, load_checkpoint, unflatten

    files = []
    lim = float(data.abs().max()) * 1.15
    fig, axes = plt.subplots(1, 3, figsize=(12, 4), sharex=True, sharey=True)
    for ax, (title, x) in zip(axes, [("data (held out)", data), *samples.items()]):
        ax.scatter(x[:3000, 0], x[:3000, 1], s=1, alpha=0.5)
        ax.set_title(title)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
    fig.tight_layout()
    fig.savefig(out / "samples.png", dpi=90)
    plt.close(fig)
    files.append("samples.png")

    # V_phi over the plane at a few t, and the weights it gives on a fresh batch of bridge samples
    cfg = load_run_config(agm_dir)
    method, _ = build_method(cfg, (2,))
    _, parts = load_checkpoint(latest_checkpoint(agm_dir), parts=("networks",))
    method.potential.load_state_dict(unflatten(parts["networks"], "potential"))
    method.drift.load_state_dict(unflatten(parts["networks"], "drift"))
    grid = torch.linspace(-lim, lim, 120)
    xx, yy = torch.meshgrid(grid, grid, indexing="xy")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    ts = [0.1, 0.5, 0.9]
    fig, axes = plt.subplots(1, len(ts), figsize=(4 * len(ts), 3.6))
    with torch.no_grad():
        for ax, t in zip(axes, ts):
            v = method.potential(pts, torch.full((pts.shape[0],), t)).reshape(xx.shape)
            im = ax.imshow(v.numpy(), origin="lower", extent=(-lim, lim, -lim, lim), cmap="viridis")
            ax.set_title(f"V_phi(x, t={t})")
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(out / "potential.png", dpi=90)
    plt.close(fig)
    files.append("potential.png")

    g = torch.Generator().manual_seed(123)
    x1 = data[torch.randint(data.shape[0], (4096,), generator=g)]
    x0 = torch.randn(x1.shape, generator=g)
    s = method.path.sample(x0, x1, generator=g)
    with torch.no_grad():
        v = method.potential(s.xt, s.t)
    w = method.weighting.weights(v, s.t, step=10**9)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    axes[0].hist(w.numpy(), bins=60)
    axes[0].set_title(f"importance weights (ESS/B = {float(w.sum() ** 2 / (w.pow(2).sum() * len(w))):.2f})")
    axes[1].scatter(s.t.numpy(), w.numpy(), s=1, alpha=0.4)
    axes[1].set_xlabel("t")
    axes[1].set_ylabel("w")
    axes[1].set_title("weight against bridge time")
    fig.tight_layout()
    fig.savefig(out / "weights.png", dpi=90)
    plt.close(fig)
    files.append("weights.png")
    return files


def _train_and_eval(name: str, overrides: list[str], out: Path, seed: int) -> tuple[str, dict, dict, torch.Tensor]:
    """One arm of the demo (runs in its own process with one thread)."""
    torch.set_num_threads(1)
    cfg = load_config("toy", overrides + [f"method={name}"])
    run_dir = out / name  # the demo's own folder was checked new/empty (or --overwrite cleared it) before the workers started
    t0 = time.perf_counter()
    info = train(cfg, run_dir)
    train_s = time.perf_counter() - t0
    metrics = evaluate_run(run_dir, seed=seed)
    metrics["train_seconds"] = round(train_s, 2)
    return name, info, metrics, sample_run(run_dir, 3000, seed=seed + 1)


def run_demo(out: str | Path = "runs/demo", dataset: str = "checkerboard", steps: int = 10000, seed: int = 0, plots: bool = True,
             overwrite: bool = False) -> dict[str, Any]:
    """Train baseline and AGM with identical seed/budget (in parallel, one process each); evaluate both.

    ``out`` must be new or empty (ConfigError otherwise) unless ``overwrite``: the demo never deletes a user's files unasked.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from agm.training.runs import check_out_dir

    out = check_out_dir(Path(out), overwrite=overwrite)
    overrides = [f"data.name={dataset}", f"seed={seed}", f"train.steps={steps}", "train.ckpt_every=100000",
                 "eval.n_samples=4000", "train.progress=false"]
    load_config("toy", overrides)  # validate before starting workers
    print(f"training drift-only and AGM on '{dataset}' for {steps} steps each (seed {seed}) ...", flush=True)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_train_and_eval, name, overrides, out, seed) for name in ("baseline", "agm")]
        arms = [f.result() for f in futures]
    results: dict[str, Any] = {}
    samples = {}
    for name, info, metrics, x in arms:
        results[name] = metrics
        samples[name] = x
        if name == "agm":
            results["potential_param_ratio"] = info["potential_param_ratio"]
            results["drift_params"] = info["drift_params"]
    cfg = load_config("toy", overrides)
    _, test = load_data(cfg)
    results["settings"] = {"dataset": dataset, "steps": steps, "seed": seed, "batch_size": cfg.train.batch_size,
                           "sigma": cfg.path.sigma, "sample_steps": cfg.sample.steps,
                           "parameterisation": cfg.model.parameterisation}
    if plots:
        results["plots"] = _plots(out, test, samples, out / "agm")
    results["wall_seconds"] = round(time.perf_counter() - t0, 1)
    from agm.training.checkpoint import atomic_write_text

    atomic_write_text(out / "metrics.json", json.dumps(results, indent=1))
    print(format_table(results))
    return results


def format_table(results: dict[str, Any]) -> str:
    keys = ["w2", "mmd", "energy", "precision", "recall", "density", "coverage", "train_seconds"]
    lines = [f"{'metric':<14}{'drift-only':>14}{'AGM':>14}", "-" * 42]
    for k in keys:
        if k in results["baseline"]:
            lines.append(f"{k:<14}{results['baseline'][k]:>14.4f}{results['agm'][k]:>14.4f}")
    lines.append(f"V_phi / drift parameters: {results['potential_param_ratio']:.4f} (drift: {results['drift_params']:,})")
    return "\n".join(lines)
