"""Generalised flow maps (G-LSD / G-ESD / G-PSD) vs the many-step Riemannian flow-matching baseline on the
sphere S^2, the flat torus T^2 and the hyperbolic plane H^2 (GFM, Davis et al., ICLR 2026, arXiv 2510.21608;
docs/flowmaps.md). Every model trains through the shared Trainer (agm.methods.flowmaps.train.train_flow_map).

For each synthetic set (``agm.data.manifold``), method and seed: train a flow map
X_{s,t}(x) = exp_x((t - s) v_{s,t}(x)) (method 'rfm' trains the diagonal only: the RFM baseline), draw
1/2/4-step flow-map samples (for 'rfm': 1/2/4-step Euler on v_{t,t}) and a 100-step Riemannian Euler ODE on the
diagonal v_{t,t}, and compare each with held-out data by geodesic MMD^2 (Gaussian kernel on d_g, median
bandwidth) and geodesic W2 (exact OT). Every sample's constraint violation is recorded.

    python experiments/flowmaps/benchmark.py            # the full run (500 iterations, 1000 evaluation points)
    python experiments/flowmaps/benchmark.py --iters 300 --n-eval 500 --name flowmaps_reduced   # docs/flowmaps.md
    python experiments/flowmaps/benchmark.py --quick    # smoke run (< 1 min)

Writes experiments/results/flowmaps.json and flowmaps_<dataset>.png (seed-0 samples on the manifold).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

from agm.data.manifold import SYNTHETIC, make_manifold_data
from agm.metrics.geodesic import median_geodesic_distance
from agm.methods.flowmaps.config import DEFAULT_LR, load_config
from agm.methods.flowmaps.train import evaluate_samples, sample_flow_map, train_flow_map
from agm.training.results import write_result

METHODS = ["rfm", "lagrangian", "eulerian", "progressive"]
DATASETS = ["sphere_vmf", "torus_wrapped", "hyperbolic_mixture"]
FEW = [1, 2, 4]
MANY = 100


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", choices=sorted(SYNTHETIC), default=DATASETS, help="synthetic sets (each fixes its manifold)")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=METHODS, help="methods to train ('rfm' = baseline)")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds")
    p.add_argument("--iters", type=int, default=500, help="training iterations per run")
    p.add_argument("--batch", type=int, default=256, help="batch size")
    p.add_argument("--hidden", type=int, default=128, help="MLP width")
    p.add_argument("--lr", type=float, default=DEFAULT_LR, help=f"learning rate, constant (default: the config's, {DEFAULT_LR:g})")
    p.add_argument("--n-train", type=int, default=20000, help="training points per set")
    p.add_argument("--n-eval", type=int, default=1000, help="held-out points and samples per evaluation")
    p.add_argument("--many", type=int, default=MANY, help="Euler steps of the many-step ODE baseline")
    p.add_argument("--out", default="experiments/results", help="output folder")
    p.add_argument("--name", default="flowmaps", help="results file stem (<out>/<name>.json)")
    p.add_argument("--quick", action="store_true", help="smoke mode: 1 seed, 30 iterations, 200 eval points, 20-step ODE")
    p.add_argument("--table", action="store_true", help="print markdown tables of an existing <out>/<name>.json and exit")
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.iters, args.n_train, args.n_eval, args.many = [0], 30, 2000, 200, 20
        args.name = args.name if args.name != "flowmaps" else "flowmaps_quick"
    return args


def train_config(args, method: str = "lagrangian", seed: int = 0):
    """The method's one config (agm.methods.flowmaps.config) with the benchmark's settings."""
    return load_config(None, [f"method={method}", f"seed={seed}", f"train.steps={args.iters}", f"train.batch_size={args.batch}",
                              f"model.hidden={args.hidden}", f"train.lr={args.lr}", "train.progress=false",
                              "train.tensorboard=false", "train.device=cpu", "train.threads=1"])


def run_dataset(args, dataset: str) -> tuple[dict, dict]:
    manifold, train = make_manifold_data(dataset, args.n_train, seed=0)
    _, heldout = make_manifold_data(dataset, args.n_eval, seed=10_001)
    _, fresh = make_manifold_data(dataset, args.n_eval, seed=10_002)
    h = median_geodesic_distance(manifold, heldout)

    def ev(x, seed=0):
        return evaluate_samples(manifold, x, heldout, bandwidth=h, seed=seed, max_samples=args.n_eval)

    reference = {
        "data_vs_heldout": ev(fresh),  # the metric floor: a fresh draw of the true law
        "prior_vs_heldout": ev(manifold.random_base(args.n_eval, generator=torch.Generator().manual_seed(7))),
    }
    print(dataset, json.dumps({k: (round(v["mmd2"], 5), round(v["w2"], 4)) for k, v in reference.items()}), flush=True)
    runs, plot_samples = [], {}
    for method in args.methods:
        for seed in args.seeds:
            cfg = train_config(args, method, seed)
            t0 = time.time()
            res = train_flow_map(manifold, train, cfg)
            train_s = time.time() - t0
            evals = {}
            mode = "ode" if method == "rfm" else "map"
            for nfe in FEW:
                x = sample_flow_map(res.flow_map, args.n_eval, nfe, mode=mode, seed=seed)
                evals[f"{mode}_{nfe}"] = ev(x, seed)
                if seed == args.seeds[0]:
                    plot_samples[(method, f"{nfe} step{'s' * (nfe > 1)}")] = x
            x = sample_flow_map(res.flow_map, args.n_eval, args.many, mode="ode", seed=seed)
            evals[f"ode_{args.many}"] = ev(x, seed)
            if seed == args.seeds[0]:
                plot_samples[(method, f"ODE {args.many} steps")] = x
            last = {k: v for k, v in res.history[-1].items() if k in ("step", "loss", "diag", "sd")} if res.history else None
            row = {"method": method, "seed": seed, "train_seconds": round(train_s, 1), "final_loss": last, "eval": evals}
            runs.append(row)
            print(dataset, json.dumps({"method": method, "seed": seed, "train_s": round(train_s, 1)}
                                      | {k: (round(v["mmd2"], 5), round(v["w2"], 4)) for k, v in evals.items()}), flush=True)
    summary = {}
    for method in args.methods:
        rows = [r for r in runs if r["method"] == method]
        for key in rows[0]["eval"]:
            entry = {}
            for metric in ("mmd2", "mmd2_narrow", "w2"):
                vals = [r["eval"][key][metric] for r in rows]
                entry[metric] = {"mean": float(np.mean(vals)), "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, "per_seed": vals}
            entry["all_on_manifold"] = all(r["eval"][key]["on_manifold"] for r in rows)
            entry["constraint_max_err"] = max(r["eval"][key]["constraint_max_err"] for r in rows)
            summary.setdefault(method, {})[key] = entry
    result = {
        "manifold": manifold.describe(),
        "bandwidth": h,
        "reference": reference,
        "summary": summary,
        "runs": runs,
    }
    plot(manifold, dataset, heldout, plot_samples, os.path.join(args.out, f"{args.name}_{dataset}.png"))
    return result, plot_samples


def table(path: str) -> None:
    """Markdown tables (mean +- sd over seeds) of W2, MMD^2 and narrow MMD^2 from a results JSON."""
    with open(path) as f:
        res = json.load(f)
    for dataset, d in res["datasets"].items():
        ref = d["reference"]
        print(f"\n{dataset} on {d['manifold']} (floor: fresh data W2 {ref['data_vs_heldout']['w2']:.3f}, "
              f"MMD^2 {ref['data_vs_heldout']['mmd2']:.5f}; prior W2 {ref['prior_vs_heldout']['w2']:.3f}, "
              f"MMD^2 {ref['prior_vs_heldout']['mmd2']:.5f}; bandwidth h = {d['bandwidth']:.3f})\n")
        for metric, label, fmt in (("w2", "geodesic W2", "{:.3f} ± {:.3f}"), ("mmd2", "MMD^2 (h)", "{:.4f} ± {:.4f}"),
                                   ("mmd2_narrow", "MMD^2 (h/4)", "{:.4f} ± {:.4f}")):
            keys = None
            rows = []
            for method, entries in d["summary"].items():
                ks = list(entries)
                keys = keys or ["1", "2", "4", ks[-1].split("_")[1]]
                cells = [fmt.format(entries[k][metric]["mean"], entries[k][metric]["std"]) for k in ks]
                rows.append(f"| {method} | " + " | ".join(cells) + " |")
            print(f"| {label} | 1 step | 2 steps | 4 steps | ODE {keys[-1]} steps |")
            print("|---|---|---|---|---|")
            print("\n".join(rows) + "\n")
        errs = {m: max(e["constraint_max_err"] for e in entries.values()) for m, entries in d["summary"].items()}
        ok = all(e["all_on_manifold"] for entries in d["summary"].values() for e in entries.values())
        print(f"all samples on the manifold: {ok}; max constraint error per method: {errs}")


def main(argv=None) -> None:
    args = parse(argv)
    if args.table:
        table(os.path.join(args.out, f"{args.name}.json"))
        return
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    t_start = time.time()
    out = {
        "command": " ".join(["python"] + [sys.argv[0]] + sys.argv[1:]) if argv is None else "python experiments/flowmaps/benchmark.py " + " ".join(argv),
        "settings": {k: v for k, v in vars(args).items()},
        "train_config": train_config(args).to_dict(),
        "loop": "agm.training.Trainer (AdamW, weight decay 0, constant lr, grad clip 1, EMA 0.995)",
        "metric": {
            "mmd2": "unbiased MMD^2, Gaussian kernel exp(-d_g^2 / (2 h^2)) on the geodesic distance, h = median geodesic distance within the held-out set",
            "mmd2_narrow": "the same with bandwidth h / 4 (more sensitive to local structure)",
            "w2": "exact W2 between empirical laws with ground cost d_g^2 (POT emd2)",
            "n_eval": args.n_eval,
            "keys": "map_k: k-step flow map X_{t_i,t_i+1}; ode_k: k-step Riemannian Euler on the diagonal v_{t,t} (for 'rfm' this is the baseline)",
        },
        "datasets": {},
    }
    path = os.path.join(args.out, f"{args.name}.json")
    for dataset in args.datasets:  # the JSON is rewritten after each set, so a stopped run keeps what it finished
        out["datasets"][dataset], _ = run_dataset(args, dataset)
        out["wall_seconds"] = round(time.time() - t_start, 1)
        out["complete"] = dataset == args.datasets[-1]
        write_result(path, out)
    print("wrote", path, "in", out["wall_seconds"], "s")


def plot(manifold, dataset: str, heldout, samples: dict, path: str) -> None:
    """Grid of seed-0 samples on the manifold: rows = methods, columns = held-out data, 1/2/4 steps, many-step ODE.
    Sphere: orthographic view of both hemispheres (x_3 >= 0 filled, x_3 < 0 hollow); torus: the square
    [0, 2 pi)^2 with periodic edges; hyperbolic plane: the Poincare disk."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(k[0] for k in samples))
    cols = ["held-out data"] + list(dict.fromkeys(k[1] for k in samples))
    fig, axes = plt.subplots(len(methods), len(cols), figsize=(2.2 * len(cols), 2.2 * len(methods)), dpi=90, squeeze=False)
    for i, method in enumerate(methods):
        for j, col in enumerate(cols):
            ax = axes[i, j]
            x = (heldout if j == 0 else samples[(method, col)]).detach().double()
            if manifold.name == "sphere":
                up = x[:, 2] >= 0
                ax.add_patch(plt.Circle((0, 0), 1, fill=False, lw=0.5))
                ax.scatter(x[up, 0], x[up, 1], s=1, c="C0")
                ax.scatter(x[~up, 0], x[~up, 1], s=1, facecolors="none", edgecolors="C3", linewidths=0.3)
                ax.set_xlim(-1.05, 1.05); ax.set_ylim(-1.05, 1.05)
            elif manifold.name == "torus":
                ax.scatter(x[:, 0], x[:, 1], s=1)
                ax.set_xlim(0, 2 * math.pi); ax.set_ylim(0, 2 * math.pi)
            else:
                p = manifold.to_poincare(x)
                ax.add_patch(plt.Circle((0, 0), 1, fill=False, lw=0.5))
                ax.scatter(p[:, 0], p[:, 1], s=1)
                ax.set_xlim(-1.02, 1.02); ax.set_ylim(-1.02, 1.02)
            ax.set_aspect("equal")
            ax.set_xticks([]); ax.set_yticks([])
            ax.set_title(col if j == 0 else f"{method}: {col}", fontsize=7)
    fig.suptitle(f"{dataset} on {manifold.describe()} (seed 0)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    print("wrote", path, flush=True)


if __name__ == "__main__":
    main()
