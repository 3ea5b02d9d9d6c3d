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

Bellman Diffusion: f, g MLPs (128x3), sliced kernel (Eqs. 10-11) with eps = 0.05, Hutchinson trace, Adam;
samples by the Bellman Diffusion Dynamics from N(0, I), 2000 steps, eta = 0.05 / max f, with ||g|| clipped at twice
its largest value on the training data (sampler option drift_clip; without it the particles diverge here: the
fraction that stays finite is recorded as bd_noclip_finite_fraction).
DDPM: agm's VP path (agm.paths.vp) with an eps-prediction TimeMLP (128x3), the reverse SDE integrated with
agm's Euler-Maruyama sampler, 500 steps. Same number of Adam steps and batch size for both.
Metrics (agm.metrics, standardised units, against the held-out 20%): exact W2 (POT) and unbiased squared MMD
(median-heuristic multi-bandwidth RBF); and the same metrics for a second disjoint draw of training points
(the "data floor": what a perfect sampler of the training distribution would score on this test split).

    python experiments/bellman/tabular.py            # full run (3 seeds, ~4 min here)
    python experiments/bellman/tabular.py --quick    # smoke (< 1 min)
    python experiments/bellman/tabular.py --data wine /path/winequality-red.csv
Writes experiments/results/bellman_tabular.json and bellman_tabular.png.
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


def run(name: str, seed: int, steps: int, n_eval_max: int, sample_steps: int, eps: float) -> dict:
    from agm.metrics import mmd, wasserstein2
    from agm.methods.bellman.fields import FieldMatching, train_fields
    from agm.methods.bellman.dynamics import BellmanDynamics
    from agm.samplers.euler_maruyama import EulerMaruyama

    x_all, desc = load_tabular(name)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x_all))
    n_test = max(len(x_all) // 5, 2)
    te, tr = x_all[perm[:n_test]], x_all[perm[n_test:]]
    mu, sd = tr.mean(0), tr.std(0)
    sd[sd == 0] = 1.0
    xtr = torch.tensor((tr - mu) / sd, dtype=torch.float32)
    xte = torch.tensor((te - mu) / sd, dtype=torch.float32)
    n = min(n_test, n_eval_max)
    xte = xte[:n]
    out = {"set": name, "source": desc, "seed": seed, "n_train": len(tr), "n_test": n, "dim": int(xtr.shape[1])}
    gen = torch.Generator().manual_seed(seed)
    # Bellman Diffusion
    t0 = time.time()
    f_net, g_net, _ = train_fields(xtr, FieldMatching(eps=eps), steps=steps, batch_size=256, lr=1e-3, seed=seed)  # Trainer
    x0 = torch.randn(n, xtr.shape[1], generator=gen)
    # unclipped dynamics (the paper's Eq. 13 as is): record how many particles stay finite
    bd0 = BellmanDynamics(steps=sample_steps, rel_step=0.05)
    xs0 = bd0.sample(lambda z: g_net(z), x0, lambda z: f_net(z), generator=gen)
    out["bd_noclip_finite_fraction"] = float(torch.isfinite(xs0).all(1).float().mean())
    # reported sampler: ||g|| clipped at twice its largest value on the training data (drift_clip option)
    with torch.no_grad():
        gclip = 2.0 * float(g_net(xtr).norm(dim=1).max())
    bd = BellmanDynamics(steps=sample_steps, rel_step=0.05, drift_clip=gclip)
    xs_bd = bd.sample(lambda z: g_net(z), x0, lambda z: f_net(z), generator=gen)
    out["bd_s"] = time.time() - t0
    out["bd_sampler"] = {**bd.last_stats, "drift_clip": gclip}
    # DDPM
    t0 = time.time()
    path, net = train_ddpm(xtr, steps, 256, 1e-3, seed)
    drift, diff = path.reverse_sde(net)
    with torch.no_grad():
        xs_dd = EulerMaruyama(steps=500).sample(drift, torch.randn(n, xtr.shape[1], generator=gen), diff, generator=gen)
    out["ddpm_s"] = time.time() - t0
    # data floor: n other training points
    floor = xtr[torch.randperm(len(xtr), generator=gen)[:n]]
    for tag, xs in (("bellman", xs_bd), ("ddpm", xs_dd), ("data_floor", floor)):
        ok = torch.isfinite(xs).all(1)
        xs = xs[ok]
        out[tag] = {"finite_fraction": float(ok.float().mean())}
        if xs.shape[0] >= 2:
            out[tag].update({"w2": wasserstein2(xs, xte, max_samples=None), "mmd": mmd(xs, xte, max_samples=None, seed=seed)})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke mode: 1 seed, 1 set, 100 fit steps (< 1 min)")
    ap.add_argument("--seeds", type=int, default=3, help="number of seeds (default 3)")
    ap.add_argument("--steps", type=int, default=600, help="Adam steps for each model (default 600)")
    ap.add_argument("--eps", type=float, default=0.05, help="Bellman Diffusion kernel variance epsilon (default 0.05)")
    ap.add_argument("--data", nargs="+", default=list(BUILTIN), help=f"built-in names {list(BUILTIN)} or local CSV paths")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bellman_tabular.json"), help="results JSON path")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    seeds = [0] if args.quick else list(range(args.seeds))
    sets = args.data[:1] if args.quick else args.data
    steps = 100 if args.quick else args.steps
    sample_steps = 200 if args.quick else 2000
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    results = {"command": " ".join(["python", "experiments/bellman/tabular.py", *(argv if argv is not None else sys.argv[1:])]),
               "settings": {"fit_steps": steps, "batch_size": 256, "lr": 1e-3, "eps": args.eps, "bd_sample_steps": sample_steps,
                            "ddpm_sample_steps": 500, "n_eval_max": 1000},
               "runs": []}
    t0 = time.time()
    for name in sets:
        for seed in seeds:
            r = run(name, seed, steps, 1000, sample_steps, args.eps)
            results["runs"].append(r)
            print(name, seed, {k: r[k] for k in ("bellman", "ddpm", "data_floor")}, f"bd {r['bd_s']:.0f}s ddpm {r['ddpm_s']:.0f}s", flush=True)
    table = {}
    for name in sets:
        rs = [r for r in results["runs"] if r["set"] == name]
        row = {"dim": rs[0]["dim"], "n_train": rs[0]["n_train"], "n_test": rs[0]["n_test"]}
        for tag in ("bellman", "ddpm", "data_floor"):
            for k in ("w2", "mmd"):
                v = [r[tag][k] for r in rs if k in r[tag]]
                row[f"{tag}_{k}"] = [float(np.mean(v)), float(np.std(v))] if v else [float("nan"), float("nan")]
        row["bd_noclip_finite_fraction"] = float(np.mean([r["bd_noclip_finite_fraction"] for r in rs]))
        inf = float("inf")
        row["bd_wins_w2"] = f"{sum(r['bellman'].get('w2', inf) < r['ddpm'].get('w2', inf) for r in rs)}/{len(rs)}"
        row["bd_wins_mmd"] = f"{sum(r['bellman'].get('mmd', inf) < r['ddpm'].get('mmd', inf) for r in rs)}/{len(rs)}"
        table[name] = row
    results["table_mean_std_over_seeds"] = table
    results["wall_s"] = time.time() - t0
    from agm.training.results import write_result

    write_result(out_path, results)
    plot(table, out_path.with_suffix(".png"))
    print(json.dumps(table, indent=1))
    print(f"wrote {out_path} in {results['wall_s']:.0f}s")
    return 0


def plot(table: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    names = list(table)
    xs = np.arange(len(names))
    for ax, k in zip(axes, ("w2", "mmd")):
        for i, tag in enumerate(("bellman", "ddpm", "data_floor")):
            m = [table[n][f"{tag}_{k}"][0] for n in names]
            s = [table[n][f"{tag}_{k}"][1] for n in names]
            ax.bar(xs + (i - 1) * 0.27, m, 0.27, yerr=s, label=tag)
        ax.set_xticks(xs, names)
        ax.set_title(f"{k} vs held-out split (mean, std over seeds)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
