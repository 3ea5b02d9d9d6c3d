"""The AGM image claim at the scale we can reach offline: drift-only vs AGM (and the controls of docs/agm.md,
``--arms baseline time_weight agm agm_path``) on the built-in digits (32x32).

The paper (arXiv 2605.14631) reports FID 28.53 (drift-only) -> 25.47 (AGM) on CelebA-HQ 64x64. CelebA-HQ
is not available offline, so this trains both methods with EQUAL budgets (same config, steps, batch,
seeds; AGM adds only V_phi, ~1.4% of the drift's parameters) on the largest image set we have offline,
scikit-learn's 1797 digits upsampled to 32x32 (tiny!), and compares an FID proxy:

  * FD_digits: Fréchet distance in the feature space of a classifier agm trains on digits
    (agm.metrics.frechet; NOT comparable to FID), generated (EMA drift, 100 Euler-Maruyama steps)
    vs all 1797 digits (the FID convention of training-set statistics) and vs the held-out split;
  * precision / recall / density / coverage (k = 5) in the same feature space;
  * the mean and std over seeds, and the per-seed paired difference AGM - drift-only (seeds are
    paired: the same seed gives both methods the same data order and bridge noise).

Runs are trained concurrently on one GPU (``--parallel``) through the library's own path
(agm.methods.agm.config -> agm.methods.agm.run.train -> Trainer with bf16 / channels_last / fused AdamW); samples come from
agm.samplers.cuda_graph. Writes experiments/results/agm_images.json and sample-grid PNGs.

    PYTHONPATH=src python3 experiments/agm/images.py --steps 4000 --seeds 0 1 --parallel 4
    PYTHONPATH=src python3 experiments/agm/images.py --arms baseline time_weight agm agm_path --steps 1000 \
        --seeds 0 1 2 3 4 --classifier runs/digits_clf32.safetensors --out experiments/results/agm_images_arms_1k_a.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

try:  # agm.metrics imports POT for W2 at package import; W2 is not used here and POT may be absent on a GPU box
    import ot  # noqa: F401
except ImportError:
    sys.modules["ot"] = types.ModuleType("ot")

import torch  # noqa: E402

from agm.training.results import write_result  # noqa: E402

ARMS = ("agm", "time_weight", "fixed_weight", "agm_path")  # docs/agm.md; 'baseline' is drift-only


def run_one(method: str, seed: int, budgets: list[int], out: Path, config: str, extra: list[str]) -> dict:
    """Train one run into out/<method>_s<seed> for max(budgets) steps, keeping a checkpoint at every budget (with a
    constant learning rate the run's state at step K is exactly that of a K-step run), and return its timing."""
    import math

    from agm.methods.agm.config import load_config
    from agm.methods.agm.run import train

    torch.set_num_threads(1)
    torch.backends.cudnn.benchmark = True
    steps, every = max(budgets), math.gcd(*budgets)
    cfg = load_config(config, [f"method={method}", f"seed={seed}", f"train.steps={steps}", f"train.ckpt_every={every}",
                               f"train.keep_checkpoints={steps // every + 1}", *extra])
    if len(budgets) > 1 and (cfg.train.schedule != "constant"):
        raise SystemExit("several --budgets need train.schedule=constant (a K-step run must equal the first K steps)")
    run_dir = out / f"{method}_s{seed}"
    t0 = time.perf_counter()
    info = train(cfg, run_dir)
    wall = time.perf_counter() - t0
    return {"method": method, "seed": seed, "train_wall_s": round(wall, 1), "drift_params": info["drift_params"],
            "potential_param_ratio": info["potential_param_ratio"]}


def feature_classifier(size: int, steps: int, path: Path | None) -> tuple[torch.nn.Module, float, dict]:
    """The digits classifier that defines FD_digits' feature space.

    Trained on the CPU (deterministic for its seed) and, with ``path``, saved there as safetensors + a JSON
    side file, or loaded from there when the file exists: FD values from separate invocations are
    comparable only when they share these weights.
    """
    import hashlib

    from safetensors.torch import load_file, save_file

    from agm.metrics.frechet import DigitsFeatureNet, train_digits_classifier

    if path is not None and path.exists():
        meta = json.loads(path.with_suffix(".json").read_text())
        if meta["image_size"] != size:
            raise SystemExit(f"--classifier {path} was trained at image_size {meta['image_size']}, the runs use {size}")
        net = DigitsFeatureNet()
        net.load_state_dict(load_file(str(path)))
        net.eval()
        acc = meta["heldout_accuracy"]
    else:
        net, acc = train_digits_classifier(size, steps=steps, seed=0, device="cpu")
        meta = {"image_size": size, "steps": steps, "seed": 0, "heldout_accuracy": acc}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
            path.with_suffix(".json").write_text(json.dumps(meta))
    info = dict(meta, file=str(path) if path else None,
                sha256=hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else None)
    return net, acc, info


def sample_images(drift, cfg, shape, n: int, sample_steps: int, dev: str) -> torch.Tensor:
    """n images from a drift: Euler-Maruyama (CUDA graph + bf16 on a GPU), fixed noise seed, clamped to [-1, 1]."""
    from agm.samplers.cuda_graph import GraphEulerMaruyama

    sigma = cfg.path.sigma if cfg.sample.sigma is None else cfg.sample.sigma
    sampler = GraphEulerMaruyama(sample_steps, cuda_graph=dev == "cuda", amp="bf16" if dev == "cuda" else "none")
    g = torch.Generator(dev).manual_seed(1234)
    xs = []
    for i in range(0, n, 1000):
        x0 = torch.randn((min(1000, n - i), *shape), generator=g, device=dev)
        xs.append(sampler.sample(drift, x0, sigma, generator=g).clamp(-1, 1))
    return torch.cat(xs)


def evaluate_one(run_dir: Path, budgets: list[int], n: int, sample_steps: int, classifier_path: Path,
                 grid_prefix: Path | None) -> dict:
    """FD_digits and PRDC of one run's EMA drift at every budget (called in the training worker, so that evaluation
    runs in parallel with the other workers)."""
    from agm.data.images import digits_dataset, load_image_data, save_image_grid
    from agm.metrics.frechet import feature_metrics
    from agm.methods.agm.run import load_run_config, load_sampler_drift

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    clf = feature_classifier(load_run_config(run_dir).data.image_size, 0, classifier_path)[0].to(dev)
    full = None
    res = {}
    for k in budgets:
        drift, cfg, shape = load_sampler_drift(run_dir, dev, step=k)
        if full is None:
            full = digits_dataset(cfg.data.image_size)[0]
            _, test = load_image_data(cfg.data, seed=cfg.seed)
        t0 = time.perf_counter()
        x = sample_images(drift, cfg, shape, n, sample_steps, dev)
        res[k] = {"sample_s": round(time.perf_counter() - t0, 2), "vs_all_digits": feature_metrics(clf, x, full, k=5),
                  "vs_test_split": feature_metrics(clf, x, test, k=5), "n_test_split": int(test.shape[0])}
        if grid_prefix is not None:
            save_image_grid(x[:64], grid_prefix.parent / f"{grid_prefix.name}_{run_dir.name}_k{k}.png", nrow=8, upscale=2)
        print(f"[eval] {run_dir.name} @ {k}: FD_digits {res[k]['vs_all_digits']['fd']:.3f}", flush=True)
    return res


def evaluate(out: Path, runs: list[dict], n: int, sample_steps: int, classifier_steps: int, grid_prefix: Path,
             classifier_path: Path | None = None) -> dict:
    from agm.data.images import digits_dataset, load_image_data, save_image_grid
    from agm.metrics.frechet import feature_metrics
    from agm.methods.agm.run import load_run_config, load_sampler_drift

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    cfg0 = load_run_config(out / f"{runs[0]['method']}_s{runs[0]['seed']}")
    size = cfg0.data.image_size
    t0 = time.perf_counter()
    clf, acc, clf_info = feature_classifier(size, classifier_steps, classifier_path)
    clf = clf.to(dev)
    clf_s = time.perf_counter() - t0
    full = digits_dataset(size)[0]
    for r in runs:
        run_dir = out / f"{r['method']}_s{r['seed']}"
        drift, cfg, shape = load_sampler_drift(run_dir, dev)
        _, test = load_image_data(cfg.data, seed=cfg.seed)
        t0 = time.perf_counter()
        x = sample_images(drift, cfg, shape, n, sample_steps, dev)
        r["sample_s"] = round(time.perf_counter() - t0, 2)
        r["vs_all_digits"] = feature_metrics(clf, x, full, k=5)
        r["vs_test_split"] = feature_metrics(clf, x, test, k=5)
        r["n_test_split"] = int(test.shape[0])
        r["final_unweighted_drift_loss"] = _last_metric(run_dir, "unweighted_drift_loss", "drift_loss")
        save_image_grid(x[:64], grid_prefix.parent / f"{grid_prefix.name}_{r['method']}_s{r['seed']}.png", nrow=8, upscale=2)
        print(f"[eval] {r['method']} s{r['seed']}: FD_digits {r['vs_all_digits']['fd']:.3f} "
              f"P {r['vs_all_digits']['precision']:.3f} R {r['vs_all_digits']['recall']:.3f}", flush=True)
    return {"classifier_heldout_accuracy": acc, "classifier_train_s": round(clf_s, 1), "classifier_steps": clf_info["steps"],
            "classifier": clf_info}


def _last_metric(run_dir: Path, *keys: str) -> float | None:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    rec = json.loads(lines[-1])
    for k in keys:
        if k in rec:
            return rec[k]
    return None


def arms_of(runs: list[dict]) -> list[str]:
    """The methods present, drift-only first."""
    present = {r["method"] for r in runs}
    return [m for m in ("baseline", *ARMS) if m in present] + sorted(present - {"baseline", *ARMS})


def summarise(runs: list[dict]) -> dict:
    """Mean/std per method and metric, and for every arm the paired differences arm - drift-only (same seeds):
    'fd_diff_<arm>_minus_baseline' (FD_digits, with a 95% interval and the paired t p) and 'paired_<arm>' (every metric)."""
    from agm.training.results import seed_summary

    out = {}
    for ref in ("vs_all_digits", "vs_test_split"):
        per = {}
        for m in arms_of(runs):
            rows = [r for r in runs if r["method"] == m]
            per[m] = {}
            for key in rows[0][ref]:
                vals = [r[ref][key] for r in rows]
                per[m][key] = {"mean": statistics.mean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None,
                               "per_seed": {r["seed"]: r[ref][key] for r in rows}}
        if "baseline" in per:
            for m in arms_of(runs):
                if m == "baseline":
                    continue
                seeds = sorted(set(per[m]["fd"]["per_seed"]) & set(per["baseline"]["fd"]["per_seed"]))
                if not seeds:
                    continue
                paired = {}
                for key in per[m]:
                    a = [per[m][key]["per_seed"][s] for s in seeds]
                    b = [per["baseline"][key]["per_seed"][s] for s in seeds]
                    paired[key] = seed_summary(a, paired_with=b)
                per[f"paired_{m}"] = paired
                diffs = paired["fd"]["values"]
                per[f"fd_diff_{m}_minus_baseline"] = {
                    "per_seed": dict(zip(seeds, diffs)), "mean": statistics.mean(diffs),
                    "std": statistics.stdev(diffs) if len(diffs) > 1 else None, "ci95": paired["fd"]["ci95"],
                    "p_paired_t": paired["fd"].get("p_paired_t"), "lower": paired["fd"].get("lower"),
                    "relative_mean": statistics.mean(diffs) / per["baseline"]["fd"]["mean"],
                }
        out[ref] = per
    return out


def merge(paths: list[Path], out: Path) -> None:
    """Pool the runs of several result JSONs (e.g. seeds 0-1 and 2-3 run in separate GPU sessions) into one.

    Refuses unless every part used the same classifier weights (sha256) and the same steps, since FD_digits
    values are only comparable within one feature space.
    """
    parts = [json.loads(p.read_text()) for p in paths]
    shas = {(p.get("classifier") or {}).get("sha256") for p in parts}
    if len(shas) != 1 or None in shas:
        raise SystemExit(f"--merge needs parts with one saved classifier (--classifier); sha256s found: {sorted(map(str, shas))}")
    if len({p["steps"] for p in parts}) != 1:
        raise SystemExit("--merge needs parts trained for the same number of steps")
    runs = [r for p in parts for r in p["runs"]]
    keys = [(r["method"], r["seed"]) for r in runs]
    if len(keys) != len(set(keys)):
        raise SystemExit(f"--merge: a (method, seed) appears in more than one part ({sorted(keys)})")
    seeds = sorted({r["seed"] for r in runs})
    result = dict(parts[0], command=" ".join(["python3"] + sys.argv), parts=[p["command"] for p in parts],
                  seeds=sorted(seeds), runs=runs, summary=summarise(runs),
                  train_phase_wall_s=sum(p["train_phase_wall_s"] for p in parts),
                  total_wall_s=sum(p["total_wall_s"] for p in parts))
    write_result(out, json.loads(json.dumps(result, default=str)))
    s = result["summary"]["vs_all_digits"]
    for m in arms_of(runs):
        if f"fd_diff_{m}_minus_baseline" in s:
            print(f"merged {len(runs)} runs; paired FD diff ({m} - drift-only): {s[f'fd_diff_{m}_minus_baseline']}")


def real_floor(size: int, classifier_steps: int, classifier_path: Path | None, out: Path) -> None:
    """FD_digits and PRDC between two disjoint random halves of the real digits: the value a perfect
    generator would get from sampling noise alone (a floor to read the generated runs' numbers against)."""
    from agm.data.images import digits_dataset
    from agm.metrics.frechet import feature_metrics

    net, acc, info = feature_classifier(size, classifier_steps, classifier_path)
    full = digits_dataset(size)[0]
    perm = torch.randperm(full.shape[0], generator=torch.Generator().manual_seed(0))
    half = full.shape[0] // 2
    a, b = full[perm[:half]], full[perm[half:]]
    result = {"command": " ".join(["python3"] + sys.argv), "classifier": info, "classifier_heldout_accuracy": acc,
              "half_vs_other_half": feature_metrics(net, a, b, k=5), "n": [int(a.shape[0]), int(b.shape[0])]}
    write_result(out, result)
    print(json.dumps(result["half_vs_other_half"]))


def load_config_size(args) -> int:
    from agm.methods.agm.config import load_config

    return load_config(args.config, args.override).data.image_size


def write_budgets(args, runs, budgets, out, train_wall, t_all, skipped) -> None:
    """One result JSON per budget (the format --merge pools), from the workers' in-process evaluations."""
    from agm.methods.agm.config import load_config

    clf_info = feature_classifier(load_config_size(args), args.classifier_steps, args.classifier)[2]
    for k in budgets:
        per = []
        for r in runs:
            rec = {key: v for key, v in r.items() if key != "at_budget"}
            rec.update(r["at_budget"][str(k)])
            per.append(rec)
        cfg = load_config(args.config, [f"train.steps={k}", *args.override])
        result = {
            "command": " ".join(["python3"] + sys.argv), "budget_steps": k, "budgets": budgets,
            "claim": "AGM paper: FID 28.53 (drift-only) -> 25.47 (AGM) on CelebA-HQ 64x64",
            "data": f"scikit-learn digits (1797 images) upsampled to {cfg.data.image_size}x{cfg.data.image_size}; TINY, not CelebA-HQ",
            "metric_note": "FD_digits is a Frechet distance in the features of agm's digits classifier; NOT comparable to FID",
            "seeds": sorted({r["seed"] for r in runs}), "steps": k, "config": cfg.to_dict(),
            "parallel_runs_on_one_gpu": args.parallel, "n_samples": args.n_samples, "sample_steps": args.sample_steps,
            "classifier": clf_info, "classifier_heldout_accuracy": clf_info["heldout_accuracy"],
            "not_run_before_deadline": [list(j) for j in skipped], "runs": per, "summary": summarise(per),
            "train_phase_wall_s": round(train_wall, 1), "total_wall_s": round(time.perf_counter() - t_all, 1),
            "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"},
        }
        path = out.with_name(f"{out.stem}_{k}steps.json")
        write_result(path, json.loads(json.dumps(result, default=str)))
        s = result["summary"]["vs_all_digits"]
        for m in arms_of(per):
            d = s.get(f"fd_diff_{m}_minus_baseline")
            print(f"[{k} steps] {m:12s} FD {s[m]['fd']['mean']:.4f}" + (f"  diff vs drift-only {d['mean']:+.4f} ci {d['ci95']}" if d else ""))
        print("wrote", path)


def main() -> None:
    p = argparse.ArgumentParser(description="drift-only vs AGM on 32x32 digits with an FID proxy")
    p.add_argument("--steps", type=int, default=4000, help="training steps per run (equal for both methods)")
    p.add_argument("--budgets", type=int, nargs="+", default=None,
                   help="evaluate every run at each of these step counts (one run trained to the largest, checkpoints kept "
                        "at each; needs a constant lr); writes one result JSON per budget, <out stem>_<K>steps.json")
    p.add_argument("--deadline-s", type=float, default=None,
                   help="start no new training job after this many seconds; only seeds with every arm done are reported")
    p.add_argument("--finish-by-s", type=float, default=None,
                   help="start a training job only if it should end within this many seconds of the start (judged by the "
                        "longest job finished so far; the first wave always starts): fills a fixed GPU slot without a stopped run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="seeds (paired across methods)")
    p.add_argument("--parallel", type=int, default=4, help="runs trained concurrently (processes sharing the GPU)")
    p.add_argument("--config", default="images_digits_gpu", help="built-in config name or YAML path")
    p.add_argument("--n-samples", type=int, default=2000, help="generated images per run for the metrics")
    p.add_argument("--sample-steps", type=int, default=100, help="Euler-Maruyama steps")
    p.add_argument("--classifier-steps", type=int, default=1500, help="steps of the feature classifier")
    p.add_argument("--classifier", type=Path, default=None,
                   help="feature classifier weights (.safetensors): loaded if the file exists, else trained and saved there")
    p.add_argument("--work", default="/tmp/agm_images_runs", help="run directories")
    p.add_argument("--out", default=str(ROOT / "experiments/results/agm_images.json"), help="result JSON")
    p.add_argument("--override", nargs="*", default=[], help="extra config overrides key=value for every arm")
    p.add_argument("--arms", nargs="+", default=["baseline", "agm"],
                   help="methods trained per seed (docs/agm.md): baseline agm time_weight fixed_weight agm_path")
    p.add_argument("--quick", action="store_true", help="smoke mode (< 1 min on a GPU): 60 steps, seed 0, 200 samples")
    p.add_argument("--merge", nargs="+", type=Path, metavar="JSON",
                   help="combine result JSONs of separate invocations (same classifier weights) into --out, then exit")
    p.add_argument("--floor", action="store_true",
                   help="only compute FD_digits/PRDC between two halves of the real digits (written to --out), then exit")
    p.add_argument("--from-runs", type=Path, default=None, metavar="JSONL",
                   help="write the per-budget result JSONs from the <out>_runs.jsonl that --budgets workers append to "
                        "(e.g. after a stopped study); only seeds with every --arms run are summarised")
    p.add_argument("--worker", nargs=2, metavar=("METHOD", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick and not args.worker:
        args.steps, args.seeds, args.n_samples, args.classifier_steps, args.sample_steps = 60, [0], 200, 100, 20
        if "agm_images.json" in args.out:
            args.out = args.out.replace("agm_images.json", "agm_images_quick.json")
        args.work = args.work.rstrip("/") + "_quick"
    if args.floor:
        from agm.methods.agm.config import load_config

        size = load_config(args.config, args.override).data.image_size
        real_floor(size, args.classifier_steps, args.classifier, Path(args.out))
        return
    if args.merge:
        merge(args.merge, Path(args.out))
        return
    work = Path(args.work)
    budgets = sorted(set(args.budgets)) if args.budgets else [args.steps]
    if args.worker:
        r = run_one(args.worker[0], int(args.worker[1]), budgets, work, args.config, args.override)
        if args.budgets:
            ev = evaluate_one(work / f"{args.worker[0]}_s{args.worker[1]}", budgets, args.n_samples, args.sample_steps,
                              args.classifier, Path(args.out).with_suffix("") if int(args.worker[1]) == 0 else None)
            r["at_budget"] = {str(k): v for k, v in ev.items()}
            out = Path(args.out)
            with open(out.with_name(f"{out.stem}_runs.jsonl"), "a") as f:  # survives a stopped study (see --from-runs)
                f.write(json.dumps(r) + "\n")
        (work / f"{args.worker[0]}_s{args.worker[1]}.timing.json").write_text(json.dumps(r))
        return
    if args.from_runs:
        runs = [json.loads(x) for x in args.from_runs.read_text().splitlines() if x.strip()]
        seeds = sorted({r["seed"] for r in runs})
        complete = [s for s in seeds if all(any(r["method"] == m and r["seed"] == s for r in runs) for m in args.arms)]
        runs = [r for r in runs if r["seed"] in complete and r["method"] in args.arms]
        write_budgets(args, runs, budgets, Path(args.out), float("nan"), time.perf_counter(),
                      [[m, s] for s in seeds if s not in complete for m in args.arms])
        return
    if args.budgets:
        if args.classifier is None:
            raise SystemExit("--budgets evaluates inside the workers: pass --classifier (a saved or to-be-saved file)")
        feature_classifier(load_config_size(args), args.classifier_steps, args.classifier)  # train + save once, here
    t_all = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    jobs = [(m, s) for s in args.seeds for m in args.arms]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    procs: list[subprocess.Popen] = []
    started: dict[int, float] = {}
    longest = 0.0  # wall time of the longest finished job
    pending = list(jobs)
    skipped: list[tuple[str, int]] = []
    while pending or procs:
        while pending and len(procs) < args.parallel:
            m, s = pending.pop(0)
            now = time.perf_counter() - t_all
            if ((args.deadline_s is not None and now > args.deadline_s)
                    or (args.finish_by_s is not None and longest > 0 and now + longest > args.finish_by_s)):
                skipped.append((m, s))
                continue
            cmd = [sys.executable, __file__, "--worker", m, str(s), "--steps", str(args.steps), "--config", args.config,
                   "--work", str(work), "--n-samples", str(args.n_samples), "--sample-steps", str(args.sample_steps),
                   "--out", args.out, "--override", *args.override]
            if args.budgets:
                cmd += ["--budgets", *map(str, args.budgets), "--classifier", str(args.classifier)]
            log = open(work / f"{m}_s{s}.log", "w")
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
            started[procs[-1].pid] = time.perf_counter()
        time.sleep(1)
        for pr in list(procs):
            if pr.poll() is not None:
                procs.remove(pr)
                longest = max(longest, time.perf_counter() - started.pop(pr.pid))
                if pr.returncode != 0:
                    for f in work.glob("*.log"):
                        print(f.name, f.read_text()[-3000:])
                    raise SystemExit(f"a training worker failed (rc={pr.returncode})")
    train_wall = time.perf_counter() - t_all
    done_seeds = [s for s in args.seeds if all((m, s) not in skipped for m in args.arms)]
    jobs = [(m, s) for m, s in jobs if s in done_seeds]
    runs = [json.loads((work / f"{m}_s{s}.timing.json").read_text()) for m, s in jobs]
    out = Path(args.out)
    if args.budgets:
        write_budgets(args, runs, budgets, out, train_wall, t_all, skipped)
        return
    ev = evaluate(work, runs, args.n_samples, args.sample_steps, args.classifier_steps, out.with_suffix(""), args.classifier)
    from agm.methods.agm.config import load_config

    cfg = load_config(args.config, [f"train.steps={args.steps}", *args.override])
    result = {
        "command": " ".join(["python3"] + sys.argv),
        "claim": "AGM paper: FID 28.53 (drift-only) -> 25.47 (AGM) on CelebA-HQ 64x64",
        "data": f"scikit-learn digits (1797 images, 1 channel) upsampled to {cfg.data.image_size}x{cfg.data.image_size}; "
                "TINY, not CelebA-HQ",
        "metric_note": "FD_digits is a Frechet distance in the features of agm's digits classifier; NOT comparable to FID",
        "seeds": args.seeds, "steps": args.steps, "config": cfg.to_dict(), "parallel_runs_on_one_gpu": args.parallel,
        "n_samples": args.n_samples, "sample_steps": args.sample_steps, **ev,
        "runs": runs, "summary": summarise(runs),
        "train_phase_wall_s": round(train_wall, 1), "total_wall_s": round(time.perf_counter() - t_all, 1),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "threads_per_run": 1,
                    "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"},
    }
    write_result(out, json.loads(json.dumps(result, default=str)))
    s = result["summary"]["vs_all_digits"]
    print("SUMMARY (vs all digits)")
    for m in arms_of(runs):
        print(f"  {m:12s} FD {s[m]['fd']['mean']:.4f} +- {s[m]['fd']['std']}  precision {s[m]['precision']['mean']:.3f} "
              f"recall {s[m]['recall']['mean']:.3f} density {s[m]['density']['mean']:.3f} coverage {s[m]['coverage']['mean']:.3f}")
        if f"fd_diff_{m}_minus_baseline" in s:
            print(f"  paired FD diff ({m} - drift-only): {s[f'fd_diff_{m}_minus_baseline']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
