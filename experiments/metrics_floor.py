"""Reference values of agm.metrics.evaluate on every built-in toy set.

For each toy set and seed s it reports
  * floor:    evaluate(make_toy(name, n, seed=s), make_toy(name, n, seed=10_000 + s)), i.e. two
              independent samples of the true distribution: the best score any model can expect at this n;
  * gaussian: evaluate(N(mean, cov) fitted to a training sample, fresh test sample): a trivial
              moment-matched baseline that any useful generative model should beat.
It also draws a small PNG of the toy sets. Usage:

    .venv/bin/python experiments/metrics_floor.py [--n 2000] [--seeds 0 1 2]

Writes experiments/results/metrics_floor.json and experiments/results/data_toy_sets.png.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from agm.data.toy import TOY_1D, TOY_2D, make_toy, toy_names
from agm.metrics import METRIC_NAMES, evaluate
from agm.training.results import write_result  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def gaussian_fit_samples(train: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n samples of N(mean(train), cov(train)) (the moment-matched Gaussian baseline)."""
    x = train.double()
    mean, cov = x.mean(0), torch.atleast_2d(torch.cov(x.T))
    chol = torch.linalg.cholesky(cov)
    g = torch.Generator().manual_seed(20_000 + seed)
    return (mean + torch.randn(n, x.shape[1], generator=g, dtype=torch.float64) @ chol.T).float()


def summarise(rows: list[dict]) -> dict:
    """Per-metric mean and std (ddof=1) over seeds."""
    return {k: {"mean": float(np.mean([r[k] for r in rows])), "std": float(np.std([r[k] for r in rows], ddof=1)) if len(rows) > 1 else 0.0} for k in METRIC_NAMES}


def plot_sets(path: Path, n: int = 2000) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = toy_names()
    fig, axes = plt.subplots(2, 5, figsize=(12.5, 5), dpi=70)
    for ax, name in zip(axes.flat, names):
        x = make_toy(name, n, seed=0).numpy()
        if name in TOY_2D:
            ax.scatter(x[:, 0], x[:, 1], s=1, alpha=0.5)
            ax.set_xlim(-4.5, 4.5)
            ax.set_ylim(-4.5, 4.5)
            ax.set_aspect("equal")
        else:
            ax.hist(x[:, 0], bins=80, range=(-4.5, 4.5), density=True)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=6)
    axes.flat[-1].axis("off")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000, help="points per sample (and max_samples of evaluate)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds")
    p.add_argument("--sets", nargs="+", default=list(toy_names()), help="toy sets to score")
    args = p.parse_args()
    torch.set_num_threads(1)
    RESULTS.mkdir(parents=True, exist_ok=True)

    results: dict = {}
    t_eval = []
    for name in args.sets:
        per = {"floor": [], "gaussian": []}
        for s in args.seeds:
            data = make_toy(name, args.n, seed=s)
            other = make_toy(name, args.n, seed=10_000 + s)
            t0 = time.perf_counter()
            per["floor"].append(evaluate(other, data, max_samples=args.n, seed=s))
            t_eval.append(time.perf_counter() - t0)
            fit = gaussian_fit_samples(make_toy(name, args.n, seed=30_000 + s), args.n, s)
            per["gaussian"].append(evaluate(fit, data, max_samples=args.n, seed=s))
        results[name] = {kind: {"per_seed": rows, "summary": summarise(rows)} for kind, rows in per.items()}
        f, gsum = results[name]["floor"]["summary"], results[name]["gaussian"]["summary"]
        print(f"{name:>18}  floor W2 {f['w2']['mean']:.3f}  MMD {f['mmd']['mean']:.4f}  cov {f['coverage']['mean']:.3f} | "
              f"gaussian W2 {gsum['w2']['mean']:.3f}  MMD {gsum['mmd']['mean']:.4f}  cov {gsum['coverage']['mean']:.3f}", flush=True)

    plot_sets(RESULTS / "data_toy_sets.png")
    out = {
        "command": " ".join([".venv/bin/python"] + sys.argv),
        "settings": {"n": args.n, "max_samples": args.n, "k": 5, "sets": args.sets,
                     "floor": "evaluate(make_toy(name, n, 10000+s), make_toy(name, n, s))",
                     "gaussian": "evaluate(N(mean, cov) of make_toy(name, n, 30000+s), make_toy(name, n, s))"},
        "seeds": args.seeds,
        "results": results,
        "seconds_per_evaluate": {"mean": float(np.mean(t_eval)), "std": float(np.std(t_eval, ddof=1)) if len(t_eval) > 1 else 0.0},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__, "threads": 1},
    }
    write_result(RESULTS / "metrics_floor.json", out)
    print(f"wrote {RESULTS / 'metrics_floor.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
