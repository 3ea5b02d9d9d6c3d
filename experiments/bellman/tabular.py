"""Bellman Diffusion vs a DDPM baseline on tabular data (paper sec. 6, Table 1: Wasserstein and MMD).

The paper's UCI sets (Abalone, Parkinson's Telemonitoring, Mushroom, Parkinson's, Red Wine) do not ship
offline here (none is in the installed packages or the package lists). ``load_tabular`` therefore takes
either a built-in name of a set that sklearn ships inside its wheel, chosen as the closest available
stand-ins, or a path to a local CSV of a UCI set:
  wine           sklearn load_wine (UCI "Wine", 178 x 13 chemical measurements; stand-in for Red Wine Quality)
  breast_cancer  sklearn load_breast_cancer (UCI WDBC, 569 x 30; clinical measurements like Parkinson's)
  diabetes       sklearn load_diabetes (442 x 10 clinical variables; stand-in for Telemonitoring)
  <path>.csv     e.g. winequality-red.csv (https://archive.ics.uci.edu/dataset/186, ';'-separated) or
                 abalone.data (https://archive.ics.uci.edu/dataset/1; non-numeric columns are one-hot encoded)
Features only (the target/label column of the sklearn sets is dropped). Each set is split 80/20 per seed,
standardised with the training split's mean and std; both models see the same split.

Bellman Diffusion: trained and sampled through the library (agm.methods.bellman.run.fit_fields / sample_fields) with
one of the named configurations in BD_CONFIGS (overrides of `agm bellman train` keys; default "sliced_noise", the
setting chosen in docs/bellman.md); MLPs 128x3; the Bellman Diffusion Dynamics from x0 ~ N(0, I) or from the rows'
Gaussian (sample.init=data_gaussian), 2000 steps, eta = 0.05 / max f; the "_clip" samplers bound ||g|| by twice its
largest value on the training rows (sampler option drift_clip).
DDPM: agm's VP path (agm.paths.vp) with an eps-prediction TimeMLP (128x3), the reverse SDE integrated with
agm's Euler-Maruyama sampler, 500 steps. Same number of Adam steps and batch size for both.
Metrics (agm.metrics, standardised units, against the held-out 20%): exact W2 (POT) and unbiased squared MMD
(median-heuristic multi-bandwidth RBF); and the same metrics for a second disjoint draw of training points
(the "data floor": what a perfect sampler of the training distribution would score on this test split).

    python experiments/bellman/tabular.py --steps 2000 --jobs 3 --bd sliced_noise --samplers normal data_gaussian
    python experiments/bellman/tabular.py --steps 2000 --jobs 1 --bd sliced_noise --transforms whiten --samplers normal \
        --out experiments/results/bellman_tabular_v3.json    # the PCA-whitened tables (issue 18, breast_cancer MMD)
    python experiments/bellman/tabular.py --quick    # smoke (< 1 min)
    python experiments/bellman/tabular.py --data wine /path/winequality-red.csv
Writes experiments/results/bellman_tabular_v2.json and .png (rewritten after every finished job; "complete" says
whether every job ran). The former experiments/results/bellman_tabular.json came from this script at commit dc082c1.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = ("wine", "breast_cancer", "diabetes")


def load_tabular(name: str) -> tuple[np.ndarray, str]:
    """(X float64 (N, D), description) for a built-in sklearn set or a local CSV path (see the module docstring)."""
    from agm.errors import ConfigError, DataError

    if name in BUILTIN:
        from sklearn import datasets

        ds = getattr(datasets, f"load_{name}")()
        return np.asarray(ds.data, dtype=np.float64), f"sklearn.datasets.load_{name} (features only)"
    p = Path(name)
    if not p.is_file():
        from agm.errors import closest

        raise ConfigError(f"data={name!r} is neither a built-in set {list(BUILTIN)}{closest(name, BUILTIN)} nor an existing CSV "
                          "file; download a UCI set (e.g. https://archive.ics.uci.edu/dataset/186 for Red Wine) and pass its path")
    text = p.read_text()
    delim = ";" if text.count(";") > text.count(",") else ","
    rows = [r for r in csv.reader(text.splitlines(), delimiter=delim) if r and any(c.strip() for c in r)]

    def isnum(c: str) -> bool:
        try:
            float(c)
            return True
        except ValueError:
            return False

    if not all(isnum(c) for c in rows[0]) and len(rows) > 1 and sum(isnum(c) for c in rows[0]) < sum(isnum(c) for c in rows[1]):
        rows = rows[1:]  # header
    width = len(rows[0])
    if any(len(r) != width for r in rows):
        raise DataError(f"data={name!r}: rows have different numbers of columns; accepted: a rectangular CSV")
    cols = []
    for j in range(width):
        col = [r[j].strip() for r in rows]
        if all(isnum(c) for c in col):
            cols.append(np.array([float(c) for c in col])[:, None])
        else:  # categorical column -> one-hot
            cats = sorted(set(col))
            cols.append(np.array([[c == k for k in cats] for c in col], dtype=np.float64))
    x = np.concatenate(cols, 1)
    if not np.isfinite(x).all():
        raise DataError(f"data={name!r} has non-finite values; accepted: finite numbers or categorical strings")
    return x, f"local CSV {p} (categorical columns one-hot)"


class DDPM(torch.nn.Module):
    """eps-prediction DDPM on agm's VP path as a method of agm.training.Trainer: loss ||eps_hat(x_t, t) - eps||^2
    (Ho et al. 2020; agm.paths.vp)."""

    ema_names = ("net",)

    def __init__(self, dim: int) -> None:
        from agm.nets import TimeMLP
        from agm.paths.vp import VPPath

        super().__init__()
        self.path = VPPath()
        self.net = TimeMLP(dim, hidden=128, depth=3)

    def networks(self):
        return {"net": self.net}

    def loss(self, batch, step, generator):
        ps = self.path.sample(batch, generator=generator)
        loss = (self.net(ps.xt, ps.t) - ps.target).pow(2).sum(-1).mean()
        return loss, {"loss": loss.detach()}


def train_ddpm(x: torch.Tensor, steps: int, batch_size: int, lr: float, seed: int):
    """Fit the DDPM with the shared Trainer (AdamW, EMA 0.99, no clipping, batches of distinct rows, as the fields);
    returns (path, EMA eps-network)."""
    from agm.methods.bellman.fields import RowBatches
    from agm.training.config import TrainConfig
    from agm.training.trainer import Trainer

    batches = RowBatches(x, batch_size)
    torch.manual_seed(seed)
    method = DDPM(x.shape[1])
    cfg = TrainConfig(steps=steps, batch_size=batches.batch_size, lr=lr, grad_clip=0.0, ema_decay=0.99, log_every=steps,
                      ckpt_every=steps, tensorboard=False, progress=False, device="cpu")
    trainer = Trainer(method, batches, cfg, seed=seed)
    trainer.fit()
    return method.path, trainer.ema["net"].model


# Bellman Diffusion configurations: overrides of `agm bellman train` keys (docs/bellman.md); each is trained once per
# set and seed and sampled four ways (x0 ~ N(0, I) or N(mean, cov) of the training rows; drift unclipped or clipped)
BD_CONFIGS = {
    # the former tabular setting: the paper's sliced kernel (Eqs. 10-11) at a fixed eps
    "sliced_eps0.05": ["field.kernel=sliced", "field.eps=0.05"],
    # the full kernel (Eq. 8) with Silverman's eps for the batch and dimension, outputs scaled to O(1)
    "full_silverman": ["field.kernel=full", "field.eps_rule=silverman", "field.scale=kernel"],
    # + eps-conditioned fields at 1, 4, 16 x eps, annealed sampler (every level targets p; only the mobility changes)
    "full_silverman_annealed": ["field.kernel=full", "field.eps_rule=silverman", "field.scale=kernel", "field.eps_levels=[1,4,16]"],
    # + the larger levels trained on noised rows (p * N(0, eps_l - eps_1)): annealing through smoothed densities
    "full_silverman_noise_annealed": ["field.kernel=full", "field.eps_rule=silverman", "field.scale=kernel",
                                      "field.eps_levels=[1,4,16,64]", "field.level_noise=data"],
    "sliced_silverman_noise_annealed": ["field.kernel=sliced", "field.eps_rule=silverman", "field.scale=kernel",
                                        "field.eps_levels=[1,4,16,64]", "field.level_noise=data"],
    # the tabular setting chosen on wine (docs/bellman.md): sliced kernel, eps 0.3, rows perturbed by N(0, eps I) every step
    # (the fields learn p * N_eps and are trained off the rows), exact divergence
    "sliced_noise": ["field.kernel=sliced", "field.eps=0.3", "field.level_noise=data", "field.scale=kernel", "field.trace=exact"],
    "sliced_noise_hutchinson": ["field.kernel=sliced", "field.eps=0.3", "field.level_noise=data", "field.scale=kernel"],
    "sliced_clean_exact": ["field.kernel=sliced", "field.eps=0.3", "field.scale=kernel", "field.trace=exact"],
    "full_silverman_noise": ["field.kernel=full", "field.eps_rule=silverman", "field.level_noise=data", "field.scale=kernel",
                             "field.trace=exact"],
    # issue 18 breast_cancer diagnosis (docs/bellman.md): the same setting at a smaller training-noise variance
    "sliced_noise_eps0.1": ["field.kernel=sliced", "field.eps=0.1", "field.level_noise=data", "field.scale=kernel", "field.trace=exact"],
    "sliced_noise_eps0.05": ["field.kernel=sliced", "field.eps=0.05", "field.level_noise=data", "field.scale=kernel", "field.trace=exact"],
    "sliced_noise_eps0.2": ["field.kernel=sliced", "field.eps=0.2", "field.level_noise=data", "field.scale=kernel", "field.trace=exact"],
    # eps-conditioned fields at two noised levels; the sampler runs half its steps at the larger, then at the smaller
    "sliced_noise_anneal0.3to0.1": ["field.kernel=sliced", "field.eps=0.1", "field.eps_levels=[1,3]", "field.level_noise=data",
                                    "field.scale=kernel", "field.trace=exact"],
}
# data transforms applied to the standardised training rows before Bellman Diffusion is fitted (samples are mapped back, so
# every metric stays in the standardised units of the split): "standard" = none; "whiten" = PCA whitening with the training
# rows' covariance, z = (x - m) V diag(lambda)^(-1/2), so that N(0, eps I) noise in z is N(0, eps Sigma) in x
TRANSFORMS = ("standard", "whiten")


def whitener(x: torch.Tensor, transform: str = "whiten", ridge: float = 1e-6):
    """(forward, inverse) maps of ``transform`` fitted on the rows x (N, D); "standard" gives identities. ``ridge`` is added to
    the covariance's eigenvalues (relative to the largest) so that a rank-deficient table stays invertible."""
    if transform == "standard":
        return (lambda u: u), (lambda u: u)
    if transform != "whiten":
        raise ValueError(f"transform={transform!r}; accepted: {TRANSFORMS}")
    x64 = x.double()
    m = x64.mean(0)
    lam, vec = torch.linalg.eigh(torch.cov(x64.T))
    lam = lam.clamp_min(0) + ridge * float(lam.max())
    fwd_mat, inv_mat = vec / lam.sqrt(), lam.sqrt()[:, None] * vec.T

    def forward(u: torch.Tensor) -> torch.Tensor:
        return ((u.double() - m) @ fwd_mat).to(u.dtype)

    def inverse(z: torch.Tensor) -> torch.Tensor:
        return (z.double() @ inv_mat + m).to(z.dtype)

    return forward, inverse
SAMPLERS = ("normal", "normal_clip", "data_gaussian", "data_gaussian_clip")


def split(name: str, seed: int):
    x_all, desc = load_tabular(name)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x_all))
    n_test = max(len(x_all) // 5, 2)
    te, tr = x_all[perm[:n_test]], x_all[perm[n_test:]]
    mu, sd = tr.mean(0), tr.std(0)
    sd[sd == 0] = 1.0
    return torch.tensor((tr - mu) / sd, dtype=torch.float32), torch.tensor((te - mu) / sd, dtype=torch.float32), desc


def scores(xs: torch.Tensor, xte: torch.Tensor, seed: int) -> dict:
    """W2 and MMD (median heuristic on the pooled sample, so the kernel widths depend on the model's samples) against the
    held-out rows, and "mmd_fixed_bw": the same MMD with widths fixed by the held-out rows alone (median pairwise distance
    of xte times the same multipliers), one kernel for every model of a split."""
    from agm.metrics import mmd, wasserstein2
    from agm.metrics.mmd import DEFAULT_BANDWIDTH_MULTIPLIERS

    ok = torch.isfinite(xs).all(1)
    out = {"finite_fraction": float(ok.float().mean())}
    xs = xs[ok]
    if xs.shape[0] >= 2:
        hs = [m * float(torch.pdist(xte.double()).median()) for m in DEFAULT_BANDWIDTH_MULTIPLIERS]
        out.update({"w2": wasserstein2(xs, xte, max_samples=None), "mmd": mmd(xs, xte, max_samples=None, seed=seed),
                    "mmd_fixed_bw": mmd(xs, xte, hs, max_samples=None, seed=seed)})
    return out


def run_bd(name: str, seed: int, config: str, steps: int, batch: int, lr: float, n_eval_max: int, sample_steps: int,
           samplers: tuple = SAMPLERS, transform: str = "standard", return_samples: bool = False) -> dict:
    """One Bellman Diffusion configuration on one set and seed, through the library (fit_fields, sample_fields); with
    ``transform='whiten'`` the fields are fitted on PCA-whitened rows and the samples mapped back before scoring.
    ``return_samples``: also return {sampler: samples in standardised units} (diagnostics)."""
    from agm.methods.bellman.run import base_eps, fit_fields, initial_points, load_config, sample_fields

    torch.set_num_threads(1)
    xtr, xte, _ = split(name, seed)
    xte = xte[:n_eval_max]
    fwd, inv = whitener(xtr, transform)
    xtr = fwd(xtr)
    n = xte.shape[0]
    cfg = load_config(None, [*BD_CONFIGS[config], f"train.steps={steps}", f"train.batch_size={batch}", f"train.lr={lr}", f"seed={seed}",
                             f"sample.steps={sample_steps}"])
    t0 = time.time()
    nets, meta, _ = fit_fields(cfg, xtr)
    model = f"bd:{config}" + ("" if transform == "standard" else f"+{transform}")
    out = {"set": name, "seed": seed, "model": model, "eps": base_eps(cfg, meta), "train_s": time.time() - t0, "samplers": {}}
    kept = {}
    with torch.no_grad():
        g_on_data = nets["g"](xtr, out["eps"]) if cfg.field.eps_levels else nets["g"](xtr)
        gclip = 2.0 * float(g_on_data.norm(dim=1).max())
    out["drift_clip"] = gclip
    for sname in samplers:
        cfg.sample.init = "data_gaussian" if sname.startswith("data_gaussian") else "normal"
        gen = torch.Generator().manual_seed(seed + 7)
        x0 = initial_points(cfg, meta, n, generator=gen)
        t0 = time.time()
        xs = inv(sample_fields(nets, cfg, meta, x0, generator=gen, drift_clip=gclip if sname.endswith("clip") else None))
        out["samplers"][sname] = {**scores(xs, xte, seed), "sample_s": time.time() - t0}
        kept[sname] = xs
    return (out, kept) if return_samples else out


def run_ddpm(name: str, seed: int, steps: int, batch: int, lr: float, n_eval_max: int) -> dict:
    from agm.samplers.euler_maruyama import EulerMaruyama

    torch.set_num_threads(1)
    xtr, xte, _ = split(name, seed)
    xte = xte[:n_eval_max]
    n = xte.shape[0]
    gen = torch.Generator().manual_seed(seed + 7)
    t0 = time.time()
    path, net = train_ddpm(xtr, steps, batch, lr, seed)
    drift, diff = path.reverse_sde(net)
    with torch.no_grad():
        xs = EulerMaruyama(steps=500).sample(drift, torch.randn(n, xtr.shape[1], generator=gen), diff, generator=gen)
    out = {"set": name, "seed": seed, "model": "ddpm", "train_s": time.time() - t0, "samplers": {"reverse_sde": scores(xs, xte, seed)}}
    floor = xtr[torch.randperm(len(xtr), generator=gen)[:n]]  # data floor: n other training points
    out["floor"] = scores(floor, xte, seed)
    return out


def _job(args):
    kind, kw = args
    return run_ddpm(**kw) if kind == "ddpm" else run_bd(**kw)


def _key(job) -> str:
    kind, kw = job
    return f"{kind}/{kw['name']}/seed{kw['seed']}" + (f"/{kw['config']}/{kw['transform']}" if kind == "bd" else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke mode: 1 seed, 1 set, 100 fit steps (< 1 min)")
    ap.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    ap.add_argument("--steps", type=int, default=2000, help="Adam steps for each model (default 2000)")
    ap.add_argument("--batch", type=int, default=256, help="batch size of both models (capped at the training rows; default 256)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    ap.add_argument("--no-ddpm", action="store_true", help="Bellman Diffusion only (ablations)")
    ap.add_argument("--bd", nargs="+", default=["sliced_noise"], choices=list(BD_CONFIGS), help="Bellman Diffusion configurations")
    ap.add_argument("--transforms", nargs="+", default=["standard"], choices=list(TRANSFORMS),
                    help="data transforms for Bellman Diffusion (each BD configuration runs once per transform; default standard)")
    ap.add_argument("--data", nargs="+", default=list(BUILTIN), help=f"built-in names {list(BUILTIN)} or local CSV paths")
    ap.add_argument("--jobs", type=int, default=1, help="parallel worker processes (1 thread each)")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bellman_tabular_v2.json"), help="results JSON path")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [0] if args.quick else list(range(args.seeds))
    sets = args.data[:1] if args.quick else args.data
    steps = 100 if args.quick else args.steps
    sample_steps = 200 if args.quick else 2000
    out_path = Path(args.out)
    results = {"command": " ".join(["python", "experiments/bellman/tabular.py", *(argv if argv is not None else sys.argv[1:])]),
               "settings": {"fit_steps": steps, "batch_size": args.batch, "lr": args.lr, "bd_sample_steps": sample_steps,
                            "ddpm_sample_steps": 500, "n_eval_max": 1000, "bd_configs": {k: BD_CONFIGS[k] for k in args.bd},
                            "bd_transforms": list(args.transforms),
                            "samplers": list(args.samplers)},
               "runs": []}
    jobs = []
    for seed in seeds:  # seed-major: a partial run (the JSON is rewritten after every job) covers every set first
        for name in sets:
            if not args.no_ddpm:
                jobs.append(("ddpm", dict(name=name, seed=seed, steps=steps, batch=args.batch, lr=args.lr, n_eval_max=1000)))
            for c in args.bd:
                for tf in args.transforms:
                    jobs.append(("bd", dict(name=name, seed=seed, config=c, steps=steps, batch=args.batch, lr=args.lr, n_eval_max=1000,
                                            sample_steps=sample_steps, samplers=tuple(args.samplers), transform=tf)))
    t0 = time.time()
    from agm.training.results import write_result

    def record(r: dict) -> None:
        results["runs"].append(r)
        print(r["set"], r["seed"], r["model"], {k: (round(v.get("w2", float("nan")), 3), round(v.get("mmd", float("nan")), 4))
                                                 for k, v in r["samplers"].items()}, f"{r['train_s']:.0f}s", flush=True)
        results["table_mean_std_over_seeds"] = summarise(results["runs"], sets)
        results["wall_s"] = time.time() - t0
        results["complete"] = len(results["runs"]) == len(jobs)
        write_result(out_path, results)  # after every job, so that a stopped run keeps what it measured

    from agm.training.sweep import run_sweep

    run_sweep(jobs, _job, key=_key, workers=args.jobs, on_record=lambda job, r: record(r))
    plot(results["table_mean_std_over_seeds"], out_path.with_suffix(".png"))
    print(json.dumps(results["table_mean_std_over_seeds"], indent=1))
    print(f"wrote {out_path} in {results['wall_s']:.0f}s")
    return 0


def summarise(runs: list[dict], sets: list[str]) -> dict:
    """{set: {model/sampler: {w2: [mean, sd], mmd: [mean, sd], finite: mean, ratio_<metric>_to_ddpm: ratio of the seed means to DDPM's}}}."""
    table = {}
    for name in sets:
        rs = [r for r in runs if r["set"] == name]
        ddpm = {r["seed"]: r["samplers"]["reverse_sde"] for r in rs if r["model"] == "ddpm"}
        row = {}
        for r in rs:
            for sname, v in r["samplers"].items():
                row.setdefault(f"{r['model']}/{sname}", []).append((r["seed"], v))
            if "floor" in r:
                row.setdefault("data_floor", []).append((r["seed"], r["floor"]))
        out = {}
        for key, vals in row.items():
            ent = {"finite": float(np.mean([v["finite_fraction"] for _, v in vals])), "n_seeds": len(vals)}
            for k in ("w2", "mmd", "mmd_fixed_bw"):
                xs = [v[k] for _, v in vals if k in v]
                ent[k] = [float(np.mean(xs)), float(np.std(xs))] if xs else [float("nan"), float("nan")]
                # ratio to DDPM's mean (MMD can be ~0 or negative: unbiased estimate; ratios of means, not means of ratios)
            out[key] = ent
        dd = out.get("ddpm/reverse_sde")
        if dd:
            for key, ent in out.items():
                for k in ("w2", "mmd", "mmd_fixed_bw"):
                    if k not in ent or k not in dd:
                        continue
                    ent[f"ratio_{k}_to_ddpm"] = float(ent[k][0] / dd[k][0]) if dd[k][0] > 0 else float("nan")
        table[name] = out
    return table


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(table)
    keys = sorted({k for n in names for k in table[n]})
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.35 * len(keys) * len(names) + 2))
    for ax, metric in zip(axes, ("w2", "mmd")):
        labels, vals, errs = [], [], []
        for n in names:
            for k in keys:
                if k in table[n]:
                    labels.append(f"{n}: {k}")
                    vals.append(table[n][k][metric][0])
                    errs.append(table[n][k][metric][1])
        y = np.arange(len(labels))
        ax.barh(y, vals, xerr=errs)
        ax.set_yticks(y, labels, fontsize=6)
        ax.set_xscale("symlog", linthresh=1e-3 if metric == "mmd" else 1.0)
        ax.set_title(f"{metric} vs held-out 20 % (mean, sd over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
