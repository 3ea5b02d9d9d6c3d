"""The arms of docs/agm.md on built-in 2-D sets, equal budgets, several seeds (issue 17 item 4).

Main comparison: every dataset x seed x arm, the same config except `method` (arms: drift-only `baseline`,
learned time-only weighting `time_weight`, `agm`, path-level `agm_path` (ours); `fixed_weight` on request).
Every run is sampled at several step counts (--nfe, Euler-Maruyama) and the kinetic energy of the learned
drift along its sampled trajectories, E sum_k (1/2)||f(X_k, t_k)||^2 dt, is reported (a straighter coupling
lowers it). Ablations (docs/agm.md): each open choice of V_phi's objective and weighting, on a subset.
Paired statistics: per-seed differences arm - baseline (negative = better for W2/MMD), their mean with a
95% Student-t interval, the paired t-test p and the Wilcoxon p (scipy), and the count of seeds the arm wins.

    python experiments/agm/toy.py --no-ablations --arms baseline time_weight agm agm_path --nfe 5 10 20 100 \
        --datasets moons checkerboard --seeds 3 --steps 3000 --workers 1 --out experiments/results/agm_toy_arms_3k.json
    python experiments/agm/toy.py                    # the original drift-only vs AGM study with ablations
    python experiments/agm/toy.py --quick            # smoke run
Writes experiments/results/agm_toy.json (or --out) with agm.training.results.write_result.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
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


def kinetic_energy(drift, n: int, steps: int, sigma: float, seed: int) -> float:
    """E sum_k (1/2) ||f(X_k, t_k)||^2 dt along Euler-Maruyama trajectories of the drift (per sample, whole vector)."""
    import torch

    from agm.samplers import EulerMaruyama

    g = torch.Generator().manual_seed(seed + 777)
    x0 = torch.randn(n, 2, generator=g)
    with torch.no_grad():
        traj = EulerMaruyama(steps).sample(drift, x0, sigma, generator=g, return_trajectory=True)
        dt = 1.0 / steps
        total = torch.zeros(n)
        for k in range(steps):
            f = drift(traj[k], torch.full((n,), k * dt))
            total += 0.5 * f.pow(2).sum(1) * dt
    return float(total.mean())


def run_one(job: dict) -> dict:
    """Train and evaluate one (dataset, seed, arm): the job's `common` overrides, then the arm's; metrics at every `nfe`."""
    dataset, seed, label, steps, nfe = job["dataset"], job["seed"], job["label"], job["steps"], job["nfe"]
    overrides = [*job["common"], *job["overrides"]]
    import torch

    torch.set_num_threads(1)
    from agm.methods.agm.config import load_config
    from agm.methods.agm.run import evaluate_run, load_data, load_sampler_drift, sample_run, train
    from agm.metrics import evaluate

    cfg = load_config("toy", [f"data.name={dataset}", f"seed={seed}", f"train.steps={steps}", "train.progress=false",
                              "train.ckpt_every=1000000", "eval.n_samples=4000", *overrides])
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        train(cfg, Path(d) / "run")
        secs = time.perf_counter() - t0
        m = evaluate_run(Path(d) / "run", seed=seed)
        if nfe:
            _, test = load_data(cfg)
            for k in nfe:
                x = sample_run(Path(d) / "run", cfg.eval.n_samples, steps=k, seed=seed)
                mk = evaluate(x, test, max_samples=cfg.eval.max_samples, seed=seed)
                for key in ("w2", "mmd", "energy"):
                    m[f"{key}@nfe{k}"] = mk[key]
            drift, _, _ = load_sampler_drift(Path(d) / "run")
            m["kinetic_energy"] = kinetic_energy(drift, 2000, max(nfe), cfg.path.sigma, seed)
    m["train_seconds"] = secs
    return {"dataset": dataset, "seed": seed, "label": label, "metrics": m}


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
    from agm.training.results import seed_summary

    out = {}
    base_keys = ("w2", "mmd", "energy", "precision", "recall", "coverage", "train_seconds")
    for ds in datasets:
        get = lambda lab, key: [next(r["metrics"][key] for r in rows if r["dataset"] == ds and r["seed"] == s and r["label"] == lab) for s in seeds]  # noqa: E731
        first = next(r["metrics"] for r in rows if r["dataset"] == ds)
        keys = [*base_keys, *sorted(k for k in first if "@nfe" in k), *(["kinetic_energy"] if "kinetic_energy" in first else [])]
        paired_keys = [k for k in keys if k.startswith(("w2", "mmd")) or k == "kinetic_energy"]
        entry = {}
        for lab in labels:
            entry[lab] = {k: {"mean": float(np.mean(get(lab, k))), "std": float(np.std(get(lab, k), ddof=1)) if len(seeds) > 1 else 0.0}
                          for k in keys}
        for lab in labels:
            if lab != "baseline":
                entry[f"paired[{lab} - baseline]"] = {
                    k: {**paired(get("baseline", k), get(lab, k)), "ci95": seed_summary(get(lab, k), paired_with=get("baseline", k))["ci95"]}
                    for k in paired_keys}
        out[ds] = entry
    return out


def run_key(job: dict) -> str:
    """The run's key in --runs-jsonl: where a run is placed (train.device) does not name a different run."""
    import json

    common = [o for o in job["common"] if not o.startswith("train.device=")]
    return json.dumps([job["dataset"], job["seed"], job["label"], job["overrides"], job["steps"], common, job["nfe"]])


def run_jobs(jobs: list[dict], workers: int, runs_jsonl: str | None) -> list[dict]:
    """Run every job (in worker processes); with runs_jsonl, reuse finished runs recorded there and append new ones."""
    from agm.training.sweep import read_runs, run_sweep

    done = read_runs(runs_jsonl) if runs_jsonl else {}
    n_old = sum(run_key(j) in done for j in jobs)
    print(f"{n_old} runs reused from {runs_jsonl}, {len(jobs) - n_old} to run", flush=True)

    def report(j: dict, row: dict) -> None:
        print(f"done {j['dataset']} seed {j['seed']} {j['label']}: w2 {row['metrics']['w2']:.4f}", flush=True)

    return run_sweep(jobs, run_one, key=run_key, workers=workers, runs_jsonl=runs_jsonl, on_record=report)


def parse_arm(spec: str) -> tuple[str, list[str]]:
    """'agm' -> ('agm', ['method=agm']); 'LABEL:method=M,key=value,...' -> (LABEL, ['method=M', 'key=value', ...])."""
    import re

    if ":" not in spec:
        return spec, [f"method={spec}"]
    label, rest = spec.split(":", 1)
    overrides = [o for o in re.split(r",(?=[A-Za-z_][\w.]*=)", rest) if o]
    if not label or not any(o.startswith("method=") for o in overrides) or not all("=" in o for o in overrides):
        raise SystemExit(f"--arms {spec!r}: expected LABEL:method=NAME[,key=value...]")
    return label, overrides


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
    ap.add_argument("--arms", nargs="+", default=["baseline", "agm"],
                    help="methods compared (baseline first): baseline agm time_weight fixed_weight agm_path (docs/agm.md), "
                         "or LABEL:KEY=VALUE,KEY=VALUE for a method with its own overrides, e.g. "
                         "fw_p2:method=fixed_weight,fixed_weight.schedule=power,fixed_weight.power=2")
    ap.add_argument("--nfe", nargs="+", type=int, default=[], help="also evaluate at these sampler step counts, e.g. 5 10 20 100")
    ap.add_argument("--out", default=str(ROOT / "experiments/results/agm_toy.json"))
    ap.add_argument("--runs-jsonl", default=None,
                    help="append every finished run here and reuse the runs already there (same dataset, seed, arm, steps, "
                         "overrides, NFE): a long study survives being stopped and continues where it was")
    args = ap.parse_args()
    common, nfe = args.common, args.nfe
    specs = dict(parse_arm(a) for a in args.arms)
    specs.setdefault("baseline", ["method=baseline"])
    arms = ["baseline", *[a for a in specs if a != "baseline"]]
    datasets, seeds, steps = args.datasets, list(range(args.seeds)), args.steps
    abl_datasets, abl_seeds = ["moons", "unbalanced_mixture"], list(range(args.ablation_seeds))
    if args.no_ablations:
        abl_datasets = []
    if args.quick:
        datasets, seeds, steps, abl_datasets, abl_seeds = datasets[:2], [0, 1], 200, ["moons"], [0, 1]

    def job(ds: str, s: int, label: str, overrides: list[str]) -> dict:
        return {"dataset": ds, "seed": s, "label": label, "overrides": overrides, "steps": steps, "common": common, "nfe": nfe}

    jobs = [job(ds, s, arm, specs[arm]) for s, ds in itertools.product(seeds, datasets) for arm in arms]
    abl_jobs = [job(ds, s, lab, ["method=agm", *ov]) for lab, ov in ABLATIONS.items() if lab != "default(nll,down,batch)"
                for ds, s in itertools.product(abl_datasets, abl_seeds)]
    t0 = time.perf_counter()
    rows = run_jobs(jobs + abl_jobs, args.workers, args.runs_jsonl)
    for r in rows:
        if r["label"] == "agm":
            r2 = dict(r, label="default(nll,down,batch)")
            rows.append(r2)
    main_rows = [r for r in rows if r["label"] in arms]
    result = {
        "command": "python " + " ".join(sys.argv),
        "settings": {"config": "toy (src/agm/methods/agm/configs/toy.yaml)", "overrides": common, "steps": steps, "seeds": seeds,
                     "datasets": datasets, "arms": arms, "nfe": nfe, "ablation_datasets": abl_datasets, "ablation_seeds": abl_seeds,
                     "equal_budget": "same steps, batch, lr, drift, seed"},
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "main": summarise(main_rows, datasets, seeds, arms),
        "ablations": {} if not abl_datasets else summarise([r for r in rows if r["dataset"] in abl_datasets and r["seed"] in abl_seeds], abl_datasets, abl_seeds,
                               ["baseline", *ABLATIONS]),
        "runs": rows,
    }
    from agm.training.results import write_result

    write_result(args.out, result)
    print(table(result))
    return 0


def table(result: dict) -> str:
    """One row per dataset x arm x metric (W2 at every NFE, kinetic energy): mean ± std and the paired difference."""
    lines = ["| dataset | arm | metric | mean ± std | Δ vs drift-only [95% CI] | better | paired t p |", "|---|---|---|---|---|---|---|"]
    for ds, e in result["main"].items():
        arms = [k for k in e if not k.startswith("paired[")]
        metrics = [k for k in e["baseline"] if k == "w2" or k.startswith("w2@") or k == "kinetic_energy"]
        for k in metrics:
            for arm in arms:
                v = e[arm][k]
                if arm == "baseline":
                    lines.append(f"| {ds} | {arm} | {k} | {v['mean']:.4f} ± {v['std']:.4f} | — | — | — |")
                    continue
                p = e[f"paired[{arm} - baseline]"][k]
                lo, hi = p["ci95"]
                lines.append(f"| {ds} | {arm} | {k} | {v['mean']:.4f} ± {v['std']:.4f} | {p['mean_diff']:+.4f} [{lo:+.4f}, {hi:+.4f}] | "
                             f"{p['agm_better_count']}/{p['n']} | {p.get('t_test_p', float('nan')):.3f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
