"""Bellman Diffusion synthetic studies (paper sec. 6.1, Figs. 1-3): 1-D uniform on three disjoint spans, 2-D mixture
of three Gaussians with unbalanced weights, two moons; against a score-based Langevin sampler on the same data.

For each set and seed: fit f ~ p and g ~ grad p by field matching (agm.methods.bellman.fields, docs/bellman.md) on
standardised data, sample with the Bellman Diffusion Dynamics (agm.methods.bellman.dynamics, docs/bellman.md) from
x0 ~ N(0, I), fit a denoising-score network and sample with unadjusted Langevin from the same x0.
Mixture weights are read three ways (docs/bellman.md says sample histograms keep the initial basins when
modes are far apart, so the field itself is the fair read-out of the paper's Fig. 2 claim):
  peaks   f at the three centres, normalised (with the full 2-D kernel, f* = p * N_eps, so peak ratios = weight ratios)
  mass    integral of max(f, 0) over each mode's basin on a grid, normalised
  samples fraction of sampler particles in each basin (Bellman dynamics, the same with ||g|| clipped at twice
          its largest value on the data ("bellman_clip", sampler option drift_clip), and Langevin)
The 2-D mixture is fitted with both kernels: 'sliced' (the paper's Eqs. 10-11; f learns a sliced density,
docs/bellman.md) and 'full' (Eq. 8, the d-dim Gaussian, feasible in d = 2).
Sample quality: W2 and MMD (agm.metrics) against 4000 fresh data points, 3000 samples each; for the 1-D set also the fraction of
samples inside the three spans and the KS distance to the exact CDF.

    python experiments/bellman/synthetic.py --seeds 3   # full run (about 16 min on a loaded 2-core box)
    python experiments/bellman/synthetic.py --quick     # smoke (< 1 min)
    # old vs new code, same protocol (docs/bellman.md): git worktree add /tmp/old-bellman dc082c1, then
    PYTHONPATH=/tmp/old-bellman/src python experiments/bellman/synthetic.py --run-from /tmp/old-bellman/experiments/bellman_synthetic.py ...
Writes experiments/results/bellman_synthetic.json and bellman_synthetic_<set>.png.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]

SCHEDULE = "cosine"  # the fields' learning-rate schedule on the Trainer (--schedule; the former loop annealed by a cosine)

SETS = {
    # name: (kernels to fit, eps on standardised data)
    "uniform3": (["full"], 0.01),
    "unbalanced_mixture": (["sliced", "full"], 0.02),
    "moons": (["sliced"], 0.02),
}


def uniform3_cdf(x: np.ndarray) -> np.ndarray:
    from agm.data.toy import UNIFORM3_INTERVALS

    total = sum(b - a for a, b in UNIFORM3_INTERVALS)
    out = np.zeros_like(x, dtype=float)
    for a, b in UNIFORM3_INTERVALS:
        out += np.clip(x - a, 0, b - a)
    return out / total


def run(name: str, kernel: str, eps: float, seed: int, steps: int, n_samples: int, sample_steps: int) -> dict:
    from scipy import stats

    from agm.data.toy import UNBALANCED_MEANS, UNBALANCED_WEIGHTS, UNIFORM3_INTERVALS, assign_modes, make_toy
    from agm.metrics import mmd, wasserstein2
    from agm.methods.bellman.fields import FieldMatching, train_fields
    from agm.methods.bellman.dynamics import BellmanDynamics
    from agm.methods.bellman.langevin import LangevinDynamics, train_score

    x_raw = make_toy(name, 20_000, seed=seed)
    ref = make_toy(name, 4000, seed=10_000 + seed)
    mu, sd = x_raw.mean(0), x_raw.std(0)
    x = (x_raw - mu) / sd
    d = x.shape[1]
    t0 = time.time()
    obj = FieldMatching(eps=eps, kernel=kernel, trace="exact" if d == 1 else "hutchinson")
    f_net, g_net, log = train_fields(x, obj, steps=steps, batch_size=512, lr=2e-3, hidden=128, depth=3, seed=seed, log_every=max(steps // 10, 1),
                                     schedule=SCHEDULE)
    t_fit = time.time() - t0
    score = train_score(x, sigma=0.1, steps=steps, batch_size=512, lr=2e-3, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n_samples, d, generator=gen)
    with torch.no_grad():
        fmax = float(f_net(x).clamp_min(0).max())
    bd = BellmanDynamics(steps=sample_steps, rel_step=0.05)
    xs_bd = bd.sample(lambda z: g_net(z), x0, lambda z: f_net(z), generator=gen)
    stats_bd = dict(bd.last_stats)
    # safety variant: ||g|| clipped at twice its largest value on 4000 training points (off-support extrapolation guard)
    with torch.no_grad():
        gclip = 2.0 * float(g_net(x[:4000]).norm(dim=1).max())
    bdc = BellmanDynamics(steps=sample_steps, rel_step=0.05, drift_clip=gclip)
    xs_bdc = bdc.sample(lambda z: g_net(z), x0, lambda z: f_net(z), generator=gen)
    # Langevin step: effective Bellman step is eta f / 2 ~ 0.025 at the peak; give Langevin eta = 0.01 and the same step count
    xs_lv = LangevinDynamics(steps=sample_steps, step_size=0.01).sample(lambda z: score(z), x0, generator=gen)
    out = {"set": name, "kernel": kernel, "eps": eps, "seed": seed, "fit_steps": steps, "fit_s": t_fit,
           "sampler": {"steps": sample_steps, **stats_bd, "max_f_data": fmax, "drift_clip": gclip, "clip_stats": bdc.last_stats},
           "loss_log": log}
    samples = {}
    for tag, xs in (("bellman", xs_bd), ("bellman_clip", xs_bdc), ("langevin", xs_lv)):
        raw = xs * sd + mu
        ok = torch.isfinite(raw).all(1)
        raw = raw[ok]
        samples[tag] = raw
        m = {"finite_fraction": float(ok.float().mean())}
        if raw.shape[0] < 2:  # every particle diverged: no metric can be computed
            out[tag] = m
            continue
        m["w2"] = wasserstein2(raw, ref, max_samples=2000, seed=seed)
        m["mmd"] = mmd(raw, ref, max_samples=2000, seed=seed)
        if name == "uniform3":
            r = raw[:, 0].numpy()
            inside = np.zeros_like(r, dtype=bool)
            for a, b in UNIFORM3_INTERVALS:
                inside |= (r >= a) & (r <= b)
            m["inside_fraction"] = float(inside.mean())
            m["ks"] = float(stats.kstest(r, uniform3_cdf).statistic)
            m["span_weights"] = [float(((r >= a) & (r <= b)).mean()) for a, b in UNIFORM3_INTERVALS]
        if name == "unbalanced_mixture":
            m["mode_weights"] = (torch.bincount(assign_modes(raw, name), minlength=3).double() / raw.shape[0]).tolist()
        out[tag] = m
    # starting basins of x0 (what the samplers would keep if no mass crosses between modes)
    if name == "unbalanced_mixture":
        out["x0_mode_weights"] = (torch.bincount(assign_modes(x0 * sd + mu, name), minlength=3).double() / n_samples).tolist()
        centres = (torch.tensor(UNBALANCED_MEANS, dtype=torch.float32) - mu) / sd
        with torch.no_grad():
            peaks = f_net(centres).clamp_min(0).double()
        w_true = np.array(UNBALANCED_WEIGHTS)
        out["true_weights"] = w_true.tolist()
        out["peak_weights"] = (peaks / peaks.sum()).tolist()
        # basin masses on a grid (raw units)
        lin = [torch.linspace(-4.5, 4.5, 181), torch.linspace(-3.5, 4.5, 161)]
        gx, gy = torch.meshgrid(*lin, indexing="ij")
        pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
        with torch.no_grad():
            fv = f_net((pts - mu) / sd).clamp_min(0).double()
        lab = assign_modes(pts, name)
        mass = torch.stack([fv[lab == k].sum() for k in range(3)])
        out["mass_weights"] = (mass / mass.sum()).tolist()
        for key in ("peak_weights", "mass_weights"):
            out[key.replace("weights", "max_abs_err")] = float(np.abs(np.array(out[key]) - w_true).max())
        for tag in ("bellman", "bellman_clip", "langevin"):
            if "mode_weights" in out[tag]:
                out[tag]["mode_weights_max_abs_err"] = float(np.abs(np.array(out[tag]["mode_weights"]) - w_true).max())
    if name == "uniform3":
        # recovered span weights from the field mass (exact: 1/3 each, spans of equal length)
        grid = torch.linspace(-4, 4, 1601)[:, None]
        with torch.no_grad():
            fv = f_net((grid - mu) / sd).clamp_min(0)[:, None] / sd  # density in raw units
        gr = grid[:, 0]
        out["span_mass"] = [float(fv[(gr >= a) & (gr <= b)].sum() * (gr[1] - gr[0])) for a, b in UNIFORM3_INTERVALS]
        out["total_mass"] = float(fv.sum() * (gr[1] - gr[0]))
    out["_nets"] = (f_net, g_net, score, mu, sd)
    out["_samples"] = samples
    return out


def plot(name: str, res: dict, data: torch.Tensor, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f_net, g_net, score, mu, sd = res["_nets"]
    s = res["_samples"]
    if data.shape[1] == 1:
        fig, ax = plt.subplots(1, 3, figsize=(14, 3.6))
        grid = torch.linspace(-4, 4, 801)[:, None]
        z = (grid - mu) / sd
        with torch.no_grad():
            f = f_net(z) / sd
            g = g_net(z)[:, 0] / sd**2
        from agm.data.toy import uniform3_log_prob

        ax[0].plot(grid[:, 0], f, label="f (learned, raw units)")
        ax[0].plot(grid[:, 0], uniform3_log_prob(grid[:, 0]).exp(), "k--", lw=0.8, label="p")
        ax[0].set_title(f"{name}: scalar field f")
        ax[0].legend(fontsize=7)
        ax[1].plot(grid[:, 0], g)
        ax[1].set_title("gradient field g")
        for tag in ("bellman", "bellman_clip", "langevin"):
            if s[tag].shape[0] < 2:
                continue
            ax[2].hist(s[tag][:, 0].numpy(), bins=120, range=(-4, 4), density=True, histtype="step", label=tag)
        ax[2].hist(data[:, 0].numpy(), bins=120, range=(-4, 4), density=True, alpha=0.2, label="data")
        ax[2].legend(fontsize=7)
        ax[2].set_title("samples")
    else:
        fig, ax = plt.subplots(1, 4, figsize=(18, 4))
        lo, hi = data.min(0).values - 0.8, data.max(0).values + 0.8
        gx, gy = torch.meshgrid(torch.linspace(lo[0], hi[0], 120), torch.linspace(lo[1], hi[1], 120), indexing="ij")
        pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
        with torch.no_grad():
            f = f_net((pts - mu) / sd).reshape(120, 120)
        im = ax[0].contourf(gx, gy, f, levels=30)
        fig.colorbar(im, ax=ax[0])
        ax[0].set_title(f"{name} ({res['kernel']} kernel): f")
        qx, qy = torch.meshgrid(torch.linspace(lo[0], hi[0], 25), torch.linspace(lo[1], hi[1], 25), indexing="ij")
        qp = torch.stack([qx.reshape(-1), qy.reshape(-1)], 1)
        with torch.no_grad():
            g = g_net((qp - mu) / sd) / sd
        ax[1].quiver(qp[:, 0], qp[:, 1], g[:, 0], g[:, 1])
        ax[1].set_title("g")
        for a, tag in zip(ax[2:], ("bellman_clip", "langevin")):
            a.scatter(data[:2000, 0], data[:2000, 1], s=1, c="lightgray")
            a.scatter(s[tag][:2000, 0], s[tag][:2000, 1], s=1)
            a.set_xlim(lo[0], hi[0])
            a.set_ylim(lo[1], hi[1])
            a.set_title(f"{tag} samples")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke mode: 1 seed, 150 fit steps, 200 sampler steps (< 1 min)")
    ap.add_argument("--seeds", type=int, default=1, help="number of seeds (default 1)")
    ap.add_argument("--steps", type=int, default=1000, help="Adam steps for each network (default 1000)")
    ap.add_argument("--sample-steps", type=int, default=None, help="sampler steps (default 2000; --quick 200)")
    ap.add_argument("--n-samples", type=int, default=None, help="particles per sampler (default 3000; --quick 1000)")
    ap.add_argument("--sets", nargs="+", default=list(SETS), help=f"subset of {list(SETS)}")
    ap.add_argument("--schedule", default=None, help="new code only: the Trainer's learning-rate schedule for the fields "
                    "(cosine, the default, | constant | linear); the Langevin baseline keeps a constant rate as before")
    ap.add_argument("--kernels", nargs="+", default=None, help="subset of each set's kernels (sliced, full)")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    ap.add_argument("--run-from", default=None,
                    help="old-vs-new comparisons: take run() from another copy of this script (e.g. a git worktree of an "
                         "older commit, with PYTHONPATH=<worktree>/src), so both versions run the identical protocol")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bellman_synthetic.json"), help="results JSON path")
    args = ap.parse_args(argv)
    run_fn = run
    if args.run_from:
        import importlib.util

        spec = importlib.util.spec_from_file_location("synthetic_other", args.run_from)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        run_fn = mod.run
    if args.schedule:
        global SCHEDULE
        SCHEDULE = args.schedule
    torch.set_num_threads(1)
    from agm.data.toy import make_toy

    seeds = [0] if args.quick else list(range(args.seeds))
    steps = 150 if args.quick else args.steps
    sample_steps = args.sample_steps or (200 if args.quick else 2000)
    n_samples = args.n_samples or (1000 if args.quick else 3000)
    sets = {k: ([kn for kn in v[0] if args.kernels is None or kn in args.kernels], v[1]) for k, v in SETS.items() if k in args.sets}
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    results = {"command": " ".join(["python", "experiments/bellman/synthetic.py", *(argv if argv is not None else sys.argv[1:])]),
               "settings": {"batch_size": 512, "lr": 2e-3, "mlp": "128x3 SiLU, linear heads",
                            "trainer": "agm.training.Trainer: AdamW (weight decay 0), no gradient clipping, EMA 0.99 (the EMA "
                                       "networks are sampled), batches of distinct rows; fields_schedule below", "score_sigma": 0.1,
                            "langevin_step": 0.01, "bellman_rel_step": 0.05, "sample_steps": sample_steps,
                            "n_samples": n_samples, "x0": "N(0, I) in standardised units", "fit_steps": steps,
                            "fields_schedule": None if args.run_from else SCHEDULE},
               "run_from": args.run_from, "runs": []}
    t0 = time.time()
    for name, (kernels, eps) in sets.items():
        for kernel in kernels:
            for seed in seeds:
                r = run_fn(name, kernel, eps, seed, steps, n_samples, sample_steps)
                if seed == seeds[0] and not args.no_plots:
                    plot(name, r, make_toy(name, 4000, seed=99), out_path.parent / f"{out_path.stem}_{name}_{kernel}.png")
                r.pop("_nets")
                r.pop("_samples")
                results["runs"].append(r)
                brief = {k: r[k] for k in ("peak_max_abs_err", "mass_max_abs_err", "span_mass") if k in r}
                print(name, kernel, seed, f"fit {r['fit_s']:.0f}s", "BD", {k: v for k, v in r["bellman"].items()},
                      "LV", {k: v for k, v in r["langevin"].items()}, brief, flush=True)
    # aggregate
    agg = {}
    for name, (kernels, _) in sets.items():
        for kernel in kernels:
            rs = [r for r in results["runs"] if r["set"] == name and r["kernel"] == kernel]
            a = {}
            for tag in ("bellman", "bellman_clip", "langevin"):
                a[f"{tag}_finite_fraction"] = [float(np.mean([r[tag]["finite_fraction"] for r in rs]))]
                for k in ("w2", "mmd", "ks", "inside_fraction", "mode_weights_max_abs_err"):
                    v = [r[tag][k] for r in rs if k in r[tag]]
                    if v:
                        a[f"{tag}_{k}"] = [float(np.mean(v)), float(np.std(v)), len(v)]
            for k in ("peak_max_abs_err", "mass_max_abs_err"):
                if k in rs[0]:
                    v = [r[k] for r in rs]
                    a[k] = [float(np.mean(v)), float(np.std(v))]
            agg[f"{name}/{kernel}"] = a
    results["summary_mean_std_over_seeds"] = agg
    results["wall_s"] = time.time() - t0
    try:
        from agm.training.results import write_result
    except ImportError:  # an older checkout on PYTHONPATH (--run-from): its writer
        from agm.provenance import write_result
    write_result(out_path, results)
    print(json.dumps(agg, indent=1))
    print(f"wrote {out_path} in {results['wall_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
