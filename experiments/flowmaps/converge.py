"""Converged few-step flow maps vs the 100-step Riemannian flow-matching baseline (GFM, arXiv 2510.21608;
docs/flowmaps.md, "Converged comparison").

Two stages, so that training can run on a machine with many cores (or a GPU) and the metrics here:

    # 1. train every (data set, method, seed), draw samples at NFE 1/2/4 and the 100-step ODE, and the exact NLL
    #    of the held-out points; writes <out>/<name>_train.json (loss curves, NLL, timings) and <out>/<name>_samples.npz
    python experiments/flowmaps/converge.py train --workers 14 --device cpu --out /tmp/fm
    # 2. geodesic W2 / MMD^2 of every sample set against the held-out points, the data-vs-data floor, summaries with
    #    95% intervals over seeds, the ranking: writes experiments/results/<name>.json
    python experiments/flowmaps/converge.py evaluate --train-dir /tmp/fm [/tmp/fm2 ...]
    # 3. markdown tables and the loss-curve figure (experiments/results/<name>_curves.png)
    python experiments/flowmaps/converge.py table

Methods: rfm (baseline: 1/2/4/100 Euler steps on its field), lagrangian (G-LSD), eulerian (G-ESD), progressive
(G-PSD), meanflow (G-MF, our Riemannian MeanFlow); flow maps at 1/2/4 map steps and their own 100-step ODE.
NLL: exact divergence, midpoint rule with --nll-steps steps, backward from the held-out points.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time

import numpy as np
import torch

DATASETS = ["earth_volcano", "earth_earthquake", "earth_flood", "earth_fire", "torus_wrapped", "so3_mixture"]
METHODS = ["rfm", "lagrangian", "eulerian", "progressive", "meanflow"]
FEW = [1, 2, 4]
HELDOUT_SEED, FRESH_SEED = 10_001, 10_002


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stage", choices=["train", "evaluate", "table"])
    p.add_argument("--datasets", nargs="+", default=DATASETS)
    p.add_argument("--methods", nargs="+", default=METHODS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=20000, help="training iterations")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--schedule", default="cosine")
    p.add_argument("--warmup", type=int, default=500)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--log-every", type=int, default=250)
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--n-eval", type=int, default=1000)
    p.add_argument("--many", type=int, default=100, help="Euler steps of the many-step ODE")
    p.add_argument("--nll-steps", type=int, default=100, help="midpoint steps of the NLL integration (0: no NLL)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--out", default="experiments/results", help="train: folder of the train JSON/NPZ")
    p.add_argument("--train-dir", nargs="+", default=None,
                   help="evaluate: folder(s) holding <name>_train.json and <name>_samples.npz (later folders add runs)")
    p.add_argument("--skip-from", default=None, help="train: skip the (data set, method, seed) runs without error in this train JSON")
    p.add_argument("--name", default="flowmaps_converged")
    return p.parse_args(argv)


def train_config(args, method: str, seed: int):
    from agm.methods.flowmaps.config import load_config

    return load_config(None, [f"method={method}", f"seed={seed}", f"train.steps={args.steps}", f"train.batch_size={args.batch}",
                              f"train.lr={args.lr}", f"train.schedule={args.schedule}", f"train.warmup_steps={args.warmup}",
                              f"model.hidden={args.hidden}", f"model.depth={args.depth}", f"train.ema_decay={args.ema}",
                              f"train.log_every={args.log_every}", "train.progress=false", "train.tensorboard=false",
                              f"train.device={args.device}", "train.threads=1"])


def run_one(args, dataset: str, method: str, seed: int) -> dict:
    """Train one model; return its loss curve, samples (numpy) and held-out NLL."""
    torch.set_num_threads(1)
    from agm.data.manifold import make_manifold_data
    from agm.methods.flowmaps.likelihood import log_likelihood
    from agm.methods.flowmaps.train import sample_flow_map, train_flow_map

    manifold, train = make_manifold_data(dataset, args.n_train, seed=0)
    _, heldout = make_manifold_data(dataset, args.n_eval, seed=HELDOUT_SEED)
    cfg = train_config(args, method, seed)
    t0 = time.time()
    res = train_flow_map(manifold, train, cfg)
    train_s = time.time() - t0
    fm = res.flow_map
    dev = next(fm.parameters()).device
    samples = {}
    mode = "ode" if method == "rfm" else "map"
    for nfe in FEW:
        samples[f"{mode}_{nfe}"] = sample_flow_map(fm, args.n_eval, nfe, mode=mode, seed=seed, device=dev).cpu().numpy()
    samples[f"ode_{args.many}"] = sample_flow_map(fm, args.n_eval, args.many, mode="ode", seed=seed, device=dev).cpu().numpy()
    out = {"dataset": dataset, "method": method, "seed": seed, "train_seconds": round(train_s, 1),
           "curve": [{k: float(v) for k, v in r.items() if k in ("step", "loss", "diag", "sd")} for r in res.history]}
    if args.nll_steps:
        t1 = time.time()
        lp = log_likelihood(manifold, fm.field, heldout.to(dev), steps=args.nll_steps, method="midpoint", estimator="exact")
        out["nll"] = float(-lp.mean())
        out["nll_sem"] = float(lp.std() / np.sqrt(lp.numel()))
        if seed == args.seeds[0]:  # the Hutchinson estimate of the same quantity (one Rademacher probe a point)
            lph = log_likelihood(manifold, fm.field, heldout.to(dev), steps=args.nll_steps, method="midpoint",
                                 estimator="hutchinson", generator=torch.Generator().manual_seed(seed))
            out["nll_hutchinson"] = float(-lph.mean())
        out["nll_seconds"] = round(time.time() - t1, 1)
    return {"row": out, "samples": samples}


def _task(payload):
    args, dataset, method, seed = payload
    try:
        return run_one(args, dataset, method, seed)
    except Exception as e:  # keep the other runs going; the error is recorded
        return {"row": {"dataset": dataset, "method": method, "seed": seed, "error": f"{type(e).__name__}: {e}"}, "samples": {}}


def stage_train(args) -> None:
    os.makedirs(args.out, exist_ok=True)
    tasks = [(args, d, m, s) for d in args.datasets for m in args.methods for s in args.seeds]
    if args.skip_from:
        with open(args.skip_from) as f:
            done = {(r["dataset"], r["method"], r["seed"]) for r in json.load(f)["runs"] if "error" not in r}
        tasks = [t for t in tasks if (t[1], t[2], t[3]) not in done]
    # the baseline first (every comparison needs it), then long tasks first (JVP methods on the larger manifolds)
    cost = {"rfm": 1, "progressive": 2, "meanflow": 2.5, "lagrangian": 3, "eulerian": 4}
    tasks.sort(key=lambda t: (t[2] != "rfm", -cost.get(t[2], 1) * (2 if t[1] == "so3_mixture" else 1)))
    rows, arrays = [], {}
    t_start = time.time()
    json_path = os.path.join(args.out, f"{args.name}_train.json")
    npz_path = os.path.join(args.out, f"{args.name}_samples.npz")

    def save():
        settings = {k: v for k, v in vars(args).items()}
        rec = {"command": "python " + " ".join(sys.argv), "settings": settings, "wall_seconds": round(time.time() - t_start, 1),
               "n_tasks": len(tasks), "runs": rows, "torch": torch.__version__,
               "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, "cpu_count": os.cpu_count()}
        from agm.training.results import write_result

        write_result(json_path, rec)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        with open(npz_path + ".tmp", "wb") as f:
            f.write(buf.getvalue())
        os.replace(npz_path + ".tmp", npz_path)

    def collect(r):
        rows.append(r["row"])
        row = r["row"]
        for k, v in r["samples"].items():
            arrays[f"{row['dataset']}/{row['method']}/{row['seed']}/{k}"] = v.astype(np.float32)
        print(json.dumps({k: v for k, v in row.items() if k != "curve"}), f"t={time.time() - t_start:.0f}s", flush=True)
        save()

    from agm.training.sweep import run_sweep

    run_sweep(tasks, _task, key=lambda t: f"{t[1]}/{t[2]}/seed{t[3]}", workers=args.workers, on_record=lambda t, r: collect(r))
    print("wrote", json_path, npz_path, flush=True)


def stage_evaluate(args) -> None:
    torch.set_num_threads(1)
    from agm.data.manifold import make_manifold_data
    from agm.metrics.geodesic import median_geodesic_distance
    from agm.methods.flowmaps.train import evaluate_samples
    from agm.training.results import seed_summary, write_result

    tdirs = args.train_dir or [args.out]
    parts, arrays, by_key = [], {}, {}
    for tdir in tdirs:  # later folders add (or redo) runs
        with open(os.path.join(tdir, f"{args.name}_train.json")) as f:
            tr = json.load(f)
        parts.append({k: tr.get(k) for k in ("command", "settings", "machine", "wall_seconds", "cuda", "torch", "cpu_count")})
        for r in tr["runs"]:
            key = (r["dataset"], r["method"], r["seed"])
            if "error" not in r or key not in by_key:
                by_key[key] = r
        with np.load(os.path.join(tdir, f"{args.name}_samples.npz")) as z:
            arrays.update({k: z[k] for k in z.files})
    tr = {"settings": parts[0]["settings"]}
    def has_samples(r):
        return any(k.startswith(f"{r['dataset']}/{r['method']}/{r['seed']}/") for k in arrays)

    runs = [r for r in by_key.values() if "error" not in r and has_samples(r)]
    errors = [r if "error" in r else {**r, "error": "no samples saved (the training job was stopped while saving)"}
              for r in by_key.values() if "error" in r or not has_samples(r)]
    errors = [{k: v for k, v in r.items() if k != "curve"} for r in errors]
    n_eval = tr["settings"]["n_eval"]
    out = {"command_evaluate": "python " + " ".join(sys.argv), "train_parts": parts, "train_settings": tr["settings"],
           "errors": errors, "datasets": {}}
    datasets = list(dict.fromkeys(r["dataset"] for r in runs))
    for d in datasets:
        m, heldout = make_manifold_data(d, n_eval, seed=HELDOUT_SEED)
        _, fresh = make_manifold_data(d, n_eval, seed=FRESH_SEED)
        h = median_geodesic_distance(m, heldout)
        ref = {"data_vs_heldout": evaluate_samples(m, fresh, heldout, bandwidth=h, max_samples=n_eval),
               "prior_vs_heldout": evaluate_samples(m, m.random_base(n_eval, generator=torch.Generator().manual_seed(7)), heldout,
                                                    bandwidth=h, max_samples=n_eval)}
        if d.startswith("earth_"):
            from agm.data.manifold import earth_like_log_density

            ref["nll_true_density"] = float(-earth_like_log_density(d[len("earth_"):], heldout).mean())
        ref["nll_prior"] = float(-m.log_prior(heldout.double()).mean())
        evals, summary = [], {}
        for r in [r for r in runs if r["dataset"] == d]:
            keys = sorted({k.split("/")[3] for k in arrays if k.startswith(f"{d}/{r['method']}/{r['seed']}/")},
                          key=lambda k: (k.split("_")[0] != ("ode" if r["method"] == "rfm" else "map"), int(k.split("_")[1])))
            ev = {}
            for k in keys:
                x = torch.from_numpy(arrays[f"{d}/{r['method']}/{r['seed']}/{k}"])
                ev[k] = evaluate_samples(m, x, heldout, bandwidth=h, seed=r["seed"], max_samples=n_eval)
            evals.append({**{k: v for k, v in r.items() if k != "curve"}, "eval": ev,
                          "curve_last": r["curve"][-1] if r["curve"] else None})
            print(d, r["method"], r["seed"], {k: round(v["w2"], 4) for k, v in ev.items()}, "nll", r.get("nll"), flush=True)
        for method in dict.fromkeys(e["method"] for e in evals):
            es = sorted([e for e in evals if e["method"] == method], key=lambda e: e["seed"])
            entry = {}
            for k in es[0]["eval"]:
                entry[k] = {metric: seed_summary([e["eval"][k][metric] for e in es]) for metric in ("w2", "mmd2", "mmd2_narrow")}
                entry[k]["all_on_manifold"] = all(e["eval"][k]["on_manifold"] for e in es)
            if "nll" in es[0]:
                entry["nll"] = seed_summary([e["nll"] for e in es])
            entry["train_seconds"] = seed_summary([e["train_seconds"] for e in es])
            summary[method] = entry
        # paired differences vs the 100-step baseline and vs G-LSD at NFE 1 (same seeds)
        paired = {}
        base = sorted([e for e in evals if e["method"] == "rfm"], key=lambda e: e["seed"])
        if base:
            bw = [e["eval"][f"ode_{tr['settings']['many']}"]["w2"] for e in base]
            for method in summary:
                es = sorted([e for e in evals if e["method"] == method], key=lambda e: e["seed"])
                if method == "rfm" or [e["seed"] for e in es] != [e["seed"] for e in base]:
                    continue
                paired[method] = {f"map_{k}_minus_rfm_ode_{tr['settings']['many']}": seed_summary([e["eval"][f"map_{k}"]["w2"] for e in es], paired_with=bw)
                                  for k in FEW}
        out["datasets"][d] = {"manifold": m.describe(), "bandwidth": h, "reference": ref, "summary": summary,
                              "paired_w2": paired, "runs": evals,
                              "curves": {f"{r['method']}/{r['seed']}": r["curve"] for r in runs if r["dataset"] == d}}
    path = os.path.join("experiments/results", f"{args.name}.json")
    write_result(path, out)
    print("wrote", path)


def stage_table(args) -> None:
    """Markdown tables of experiments/results/<name>.json (mean ± half-width of the 95% t-interval over seeds) and the
    loss-curve figure experiments/results/<name>_curves.png."""
    with open(os.path.join("experiments/results", f"{args.name}.json")) as f:
        res = json.load(f)

    def cell(e):
        lo, hi = e["ci95"]
        return f"{e['mean']:.3f} ± {(hi - lo) / 2:.3f}" if e["n"] > 1 else f"{e['mean']:.3f}"

    for d, r in res["datasets"].items():
        ref = r["reference"]
        extra = f", true-density NLL {ref['nll_true_density']:.3f}" if "nll_true_density" in ref else ""
        print(f"\n**{d}** ({r['manifold']}; W2 floor {ref['data_vs_heldout']['w2']:.3f}, prior W2 {ref['prior_vs_heldout']['w2']:.3f}; "
              f"MMD² floor {ref['data_vs_heldout']['mmd2']:.4f}, prior {ref['prior_vs_heldout']['mmd2']:.4f}; prior NLL {ref['nll_prior']:.3f}{extra})\n")
        print("| method | seeds | W2 NFE 1 | W2 NFE 2 | W2 NFE 4 | W2 ODE 100 | MMD² NFE 1 | NLL (nats) | train s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for method, e in r["summary"].items():
            ks = [k for k in e if k[:4] in ("map_", "ode_")]
            few = [k for k in ks if k != f"ode_{res['train_settings']['many']}"]
            row = [cell(e[k]["w2"]) for k in few] + [cell(e[f"ode_{res['train_settings']['many']}"]["w2"])]
            nll = cell(e["nll"]) if "nll" in e else "-"
            print(f"| {method} | {e[few[0]]['w2']['n']} | " + " | ".join(row) + f" | {e[few[0]]['mmd2']['mean']:.4f} | {nll} | {e['train_seconds']['mean']:.0f} |")
    # the ranking: paired differences (same seeds) of W2 at NFE 1/2/4, G-LSD minus each other flow map
    from agm.training.results import seed_summary

    print("\n| data set | NFE | " + " | ".join(f"G-LSD - {m}" for m in ("progressive", "eulerian", "meanflow")) + " |")
    print("|---|---|---|---|---|")
    for d, r in res["datasets"].items():
        runs = {(e["method"], e["seed"]): e for e in r["runs"]}
        for k in FEW:
            cells = []
            for other in ("progressive", "eulerian", "meanflow"):
                seeds = [sd for sd in res["train_settings"]["seeds"] if ("lagrangian", sd) in runs and (other, sd) in runs]
                if len(seeds) < 2:
                    cells.append("-" if not seeds else f"{runs[('lagrangian', seeds[0])]['eval'][f'map_{k}']['w2'] - runs[(other, seeds[0])]['eval'][f'map_{k}']['w2']:+.3f} (1 seed)")
                    continue
                ps = seed_summary([runs[("lagrangian", sd)]["eval"][f"map_{k}"]["w2"] for sd in seeds],
                                  paired_with=[runs[(other, sd)]["eval"][f"map_{k}"]["w2"] for sd in seeds])
                cells.append(f"{ps['mean']:+.3f} [{ps['ci95'][0]:+.3f}, {ps['ci95'][1]:+.3f}] ({ps['lower']}/{ps['n']} lower)")
            print(f"| {d} | {k} | " + " | ".join(cells) + " |")
    if res.get("errors"):
        print("\nerrors:", [(e["dataset"], e["method"], e["seed"], e["error"][:60]) for e in res["errors"]])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = list(res["datasets"])
    fig, axes = plt.subplots(1, len(ds), figsize=(3.2 * len(ds), 2.8), dpi=90, squeeze=False)
    for ax, d in zip(axes[0], ds):
        for i, (key, curve) in enumerate(sorted(res["datasets"][d]["curves"].items())):
            method = key.split("/")[0]
            steps = [c["step"] for c in curve]
            ax.plot(steps, [c["loss"] for c in curve], lw=0.7, color=f"C{['rfm', 'lagrangian', 'eulerian', 'progressive', 'meanflow'].index(method)}",
                    label=method if key.endswith("/0") or key.split("/")[1] == "0" else None)
        ax.set_yscale("log"); ax.set_title(d, fontsize=8); ax.set_xlabel("step", fontsize=7); ax.tick_params(labelsize=6)
    axes[0][0].set_ylabel("training loss (RFM + SD)", fontsize=7)
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    path = os.path.join("experiments/results", f"{args.name}_curves.png")
    fig.savefig(path)
    print("wrote", path)


def main(argv=None) -> None:
    args = parse(argv)
    if args.stage == "train":
        stage_train(args)
    elif args.stage == "evaluate":
        stage_evaluate(args)
    else:
        stage_table(args)


if __name__ == "__main__":
    main()
