"""Drift-only bridge matching vs AGM (our interpretation) on built-in 2-D sets, equal budgets, several seeds.

Main comparison: every dataset x seed, the same config except `method`. Ablations (agm-digest.md
section 4): each open choice of V_phi's objective and weighting, on a subset of datasets and seeds.
Paired statistics: per-seed differences AGM - baseline (negative = AGM better for W2/MMD), a
paired t-test and a Wilcoxon signed-rank test (scipy), and the count of seeds AGM wins.

    python experiments/agm/toy.py                    # full run (about 15 min on 2 cores)
    python experiments/agm/toy.py --quick            # smoke run
Writes experiments/results/agm_toy.json.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]

MAIN_DATASETS = ["moons", "8gaussians", "checkerboard", "unbalanced_mixture"]
ABLATIONS = {
    "default(nll,down,batch)": [],
    "objective=regress": ["potential.objective=regress"],
    "objective=kinetic": ["potential.objective=kinetic"],
    "sign=up": ["potential.sign=up"],
    "normalise=time_bins": ["potential.normalise=time_bins"],
    "temperature=3": ["potential.temperature=3.0"],
}


def run_one(job: tuple[str, int, str, list[str], int]) -> dict:
    dataset, seed, label, overrides, steps = job
    overrides = [*COMMON, *overrides]
    import torch

    torch.set_num_threads(1)
    from agm.methods.agm.config import load_config
    from agm.methods.agm.run import evaluate_run, train

    cfg = load_config("toy", [f"data.name={dataset}", f"seed={seed}", f"train.steps={steps}", "train.progress=false",
                              "train.ckpt_every=1000000", "eval.n_samples=4000", *overrides])
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        train(cfg, Path(d) / "run")
        secs = time.perf_counter() - t0
        m = evaluate_run(Path(d) / "run", seed=seed)
    m["train_seconds"] = secs
    return {"dataset": dataset, "seed": seed, "label": label, "metrics": m}


COMMON: list[str] = []  # overrides applied to every run (--set)


def _set_common(common: list[str]) -> None:
    COMMON[:] = common


def paired(a: list[float], b: list[float]) -> dict:
    from scipy import stats

    a, b = np.asarray(a), np.asarray(b)
    diff = b - a
    out = {"mean_diff": float(diff.mean()), "std_diff": float(diff.std(ddof=1)) if len(diff) > 1 else 0.0,
           "agm_better_count": int((diff < 0).sum()), "n": int(len(diff))}
    if len(diff) > 1 and diff.std() > 0:
        out["t_test_p"] = float(stats.ttest_rel(b, a).pvalue)
        out["wilcoxon_p"] = float(stats.wilcoxon(b, a).pvalue)
    return out


def summarise(rows: list[dict], datasets: list[str], seeds: list[int], labels: list[str]) -> dict:
    out = {}
    for ds in datasets:
        get = lambda lab, key: [next(r["metrics"][key] for r in rows if r["dataset"] == ds and r["seed"] == s and r["label"] == lab) for s in seeds]  # noqa: E731
        entry = {}
        for lab in labels:
            entry[lab] = {k: {"mean": float(np.mean(get(lab, k))), "std": float(np.std(get(lab, k), ddof=1)) if len(seeds) > 1 else 0.0}
                          for k in ("w2", "mmd", "energy", "precision", "recall", "coverage", "train_seconds")}
        for lab in labels:
            if lab != "baseline":
                entry[f"paired[{lab} - baseline]"] = {k: paired(get("baseline", k), get(lab, k)) for k in ("w2", "mmd")}
        out[ds] = entry
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10000, help="training steps per run (default: 10000, the toy config)")
    ap.add_argument("--ablation-seeds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="2 datasets, 2 seeds, 200 steps")
    ap.add_argument("--datasets", nargs="+", default=MAIN_DATASETS, help=f"2-D sets (default: {MAIN_DATASETS})")
    ap.add_argument("--set", dest="common", action="append", default=[], metavar="KEY=VALUE",
                    help="config override applied to every run (repeatable), e.g. --set path.sigma=0.2")
    ap.add_argument("--no-ablations", action="store_true", help="main comparison only")
    ap.add_argument("--out", default=str(ROOT / "experiments/results/agm_toy.json"))
    args = ap.parse_args()
    COMMON.extend(args.common)
    datasets, seeds, steps = args.datasets, list(range(args.seeds)), args.steps
    abl_datasets, abl_seeds = ["moons", "unbalanced_mixture"], list(range(args.ablation_seeds))
    if args.no_ablations:
        abl_datasets = []
    if args.quick:
        datasets, seeds, steps, abl_datasets, abl_seeds = datasets[:2], [0, 1], 200, ["moons"], [0, 1]
    jobs = [(ds, s, "baseline", ["method=baseline"], steps) for ds, s in itertools.product(datasets, seeds)]
    jobs += [(ds, s, "agm", ["method=agm"], steps) for ds, s in itertools.product(datasets, seeds)]
    abl_jobs = [(ds, s, lab, ["method=agm", *ov], steps) for lab, ov in ABLATIONS.items() if lab != "default(nll,down,batch)"
                for ds, s in itertools.product(abl_datasets, abl_seeds)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(args.workers, initializer=_set_common, initargs=(COMMON,)) as pool:
        rows = list(pool.map(run_one, jobs + abl_jobs))
    for r in rows:
        if r["label"] == "agm":
            r2 = dict(r, label="default(nll,down,batch)")
            rows.append(r2)
    main_rows = [r for r in rows if r["label"] in ("baseline", "agm")]
    result = {
        "command": "python " + " ".join(sys.argv),
        "settings": {"config": "toy (src/agm/configs/toy.yaml)", "overrides": COMMON, "steps": steps, "seeds": seeds, "datasets": datasets,
                     "ablation_datasets": abl_datasets, "ablation_seeds": abl_seeds, "equal_budget": "same steps, batch, lr, drift, seed"},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": __import__("torch").__version__},
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "main": summarise(main_rows, datasets, seeds, ["baseline", "agm"]),
        "ablations": {} if not abl_datasets else summarise([r for r in rows if r["dataset"] in abl_datasets and r["seed"] in abl_seeds], abl_datasets, abl_seeds,
                               ["baseline", *ABLATIONS]),
        "runs": rows,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(table(result))
    return 0


def table(result: dict) -> str:
    lines = ["| dataset | W2 drift-only | W2 AGM | MMD drift-only | MMD AGM | AGM better (W2) | paired t p (W2) |", "|---|---|---|---|---|---|---|"]
    for ds, e in result["main"].items():
        b, a, p = e["baseline"], e["agm"], e["paired[agm - baseline]"]["w2"]
        lines.append(f"| {ds} | {b['w2']['mean']:.4f} ± {b['w2']['std']:.4f} | {a['w2']['mean']:.4f} ± {a['w2']['std']:.4f} | "
                     f"{b['mmd']['mean']:.5f} ± {b['mmd']['std']:.5f} | {a['mmd']['mean']:.5f} ± {a['mmd']['std']:.5f} | "
                     f"{p['agm_better_count']}/{p['n']} | {p.get('t_test_p', float('nan')):.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
