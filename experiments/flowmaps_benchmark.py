"""Generalised flow maps (G-LSD / G-ESD / G-PSD) vs the Riemannian flow-matching baseline on one manifold.

Reproduces the *shape* of GFM's few-step comparison (Davis et al., ICLR 2026; digest §B7) on our synthetic
sets: for each method and seed, train a flow map, draw 1/2/4-step samples (and a 100-step ODE on the
diagonal v_{t,t}), and compare them with held-out data by geodesic MMD^2 and geodesic W2.

    python experiments/flowmaps_benchmark.py --dataset sphere_vmf --seeds 0 1 2 --iters 2000

Writes experiments/results/flowmaps_<dataset>.json and flowmaps_<dataset>.png (seed 0 samples).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch

from agm.data.manifold import SYNTHETIC, make_manifold_data
from agm.manifolds.metrics import median_geodesic_distance
from agm.manifolds.training import FlowMapTrainConfig, evaluate_samples, sample_flow_map, train_flow_map

METHODS = ["rfm", "lagrangian", "eulerian", "progressive"]
FEW = [1, 2, 4]
MANY = 100


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(SYNTHETIC), default="sphere_vmf", help="synthetic set (fixes the manifold)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS, help="methods to train")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    p.add_argument("--iters", type=int, default=2000, help="training iterations per run")
    p.add_argument("--batch", type=int, default=256, help="batch size")
    p.add_argument("--hidden", type=int, default=128, help="MLP width")
    p.add_argument("--n-train", type=int, default=20000, help="training points")
    p.add_argument("--n-eval", type=int, default=1000, help="held-out points and samples per evaluation")
    p.add_argument("--out", default="experiments/results", help="output folder")
    return p.parse_args()


def main() -> None:
    args = parse()
    torch.set_num_threads(1)
    manifold, train = make_manifold_data(args.dataset, args.n_train, seed=0)
    _, heldout = make_manifold_data(args.dataset, args.n_eval, seed=10_001)
    _, fresh = make_manifold_data(args.dataset, args.n_eval, seed=10_002)
    h = median_geodesic_distance(manifold, heldout)
    ev = lambda x, seed=0: evaluate_samples(manifold, x, heldout, bandwidth=h, seed=seed, max_samples=args.n_eval)
    reference = {
        "data_vs_heldout (metric floor)": ev(fresh),
        "prior_vs_heldout": ev(manifold.random_base(args.n_eval, generator=torch.Generator().manual_seed(7))),
    }
    print(json.dumps(reference), flush=True)
    runs, plot_samples = [], {}
    for method in args.methods:
        for seed in args.seeds:
            cfg = FlowMapTrainConfig(method=method, iters=args.iters, batch=args.batch, hidden=args.hidden, seed=seed)
            t0 = time.time()
            res = train_flow_map(manifold, train, cfg)
            train_s = time.time() - t0
            evals = {}
            modes = [("ode_euler", n) for n in FEW + [MANY]] if method == "rfm" else [("map", n) for n in FEW] + [("ode_euler", MANY)]
            for mode, nfe in modes:
                x = sample_flow_map(res.flow_map, args.n_eval, nfe, mode="map" if mode == "map" else "ode", seed=seed)
                evals[f"{mode}_{nfe}"] = ev(x, seed)
                if seed == args.seeds[0]:
                    plot_samples[f"{method} {mode} NFE={nfe}"] = x
            row = {"method": method, "seed": seed, "train_seconds": round(train_s, 1), "final_loss": res.history[-1], "eval": evals}
            runs.append(row)
            print(json.dumps({k: row[k] for k in ("method", "seed", "train_seconds")} | {k: (round(v["mmd2"], 5), round(v["w2"], 4)) for k, v in evals.items()}), flush=True)
    summary = {}
    for method in args.methods:
        rows = [r for r in runs if r["method"] == method]
        for key in rows[0]["eval"]:
            for metric in ("mmd2", "w2"):
                vals = [r["eval"][key][metric] for r in rows]
                summary.setdefault(method, {}).setdefault(key, {})[metric] = {"mean": float(np.mean(vals)), "std": float(np.std(vals)), "per_seed": vals}
            summary[method][key]["all_on_manifold"] = all(r["eval"][key]["on_manifold"] for r in rows)
    out = {
        "command": " ".join([sys.executable.split("/")[-1]] + sys.argv),
        "dataset": args.dataset,
        "manifold": manifold.describe(),
        "settings": vars(args) | {"train_config": FlowMapTrainConfig().to_dict() | {"iters": args.iters, "batch": args.batch, "hidden": args.hidden}},
        "metric": {"mmd2": f"unbiased MMD^2, Gaussian kernel on geodesic distance, bandwidth = median held-out distance = {h:.4f}",
                   "w2": "exact W2 with geodesic cost (POT emd2)", "n_eval": args.n_eval},
        "seeds": args.seeds,
        "reference": reference,
        "summary": summary,
        "runs": runs,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__},
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"flowmaps_{args.dataset}.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    print("wrote", path)
    plot(manifold, heldout, plot_samples, os.path.join(args.out, f"flowmaps_{args.dataset}.png"))


def plot(manifold, heldout, samples: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from agm.data.manifold import sphere_to_latlon

    keys = [k for k in samples if "NFE=1" in k and ("map" in k or k.startswith("rfm"))] + [k for k in samples if k.startswith("rfm") and "NFE=100" in k]
    panels = [("held-out data", heldout)] + [(k, samples[k]) for k in keys]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.6), dpi=80)
    for ax, (title, x) in zip(axes, panels):
        x = x.detach()
        if manifold.name == "sphere":
            ll = sphere_to_latlon(x)
            ax.scatter(ll[:, 1], ll[:, 0], s=1)
            ax.set_xlim(-180, 180); ax.set_ylim(-90, 90)
        elif manifold.name == "torus":
            ax.scatter(x[:, 0], x[:, 1], s=1)
            ax.set_xlim(0, 2 * np.pi); ax.set_ylim(0, 2 * np.pi)
        else:
            p = manifold.to_poincare(x)
            ax.add_patch(plt.Circle((0, 0), 1, fill=False))
            ax.scatter(p[:, 0], p[:, 1], s=1)
            ax.set_xlim(-1, 1); ax.set_ylim(-1, 1); ax.set_aspect("equal")
        ax.set_title(title, fontsize=7)
        ax.tick_params(labelsize=5)
    fig.tight_layout()
    fig.savefig(path)
    print("wrote", path)


if __name__ == "__main__":
    main()
