"""Bellman Diffusion on a Gaussian N(mu, Sigma) in d = 2, 5, 10: learned fields f, g against the closed-form truth.

p and grad p are known in closed form, and so are the finite-eps minimisers of the field-matching losses
(docs/bellman.md, "What a finite eps learns"): with h(x) = E_y k(x, y),

    f* = h,   g* = grad(p h) / (2 p) = (grad h + h grad log p) / 2,
    full kernel   h = N(x; mu, Sigma + eps I)
    sliced kernel h = E_w N(w^T (x - mu); 0, w^T Sigma w + eps),  w uniform on the unit sphere  (a "sliced density").

For every dimension and field configuration we train f and g through the library (agm.methods.bellman.run.fit_fields:
the recipe's FieldMethod on the shared Trainer, configured by the same keys as ``agm bellman train``) and compare on
held-out points x ~ p (the losses' own weighting):
  rel_l2(f, p), rel_l2(f, h), median f / p          is f the density, or the smoothed/sliced one?
  rel_l2(g, grad p), rel_l2(g, g*), cos(g, grad p)  (grad p and grad log p point the same way, so one cosine serves both)
  the learned pair's stationary score s = (2 g - grad f) / f (the dynamics dx = g dt + sqrt(f) dW is stationary
  at q with grad log q = s): cos(s, grad log p), rel_l2(s, grad log p)   -- what the sampler actually targets.
Then we sample with the Bellman Diffusion Dynamics (the recipe's sampler, x0 ~ N(0, I), the config's sample.*
settings) and score the samples against fresh draws of the Gaussian (agm.metrics W2, MMD, energy distance), next to
the same sampler run on the exact pairs (p, grad p) and (h, g*) (sampler-only controls: no learning error) and the
data floor (fresh draws vs fresh draws).

The Gaussian is expressed in standardised coordinates (per-column mean 0, sd 1, as load_user_data gives): Sigma has
eigenvalues spread over [0.5, 1.5] before standardisation, a random rotation and a random mean.

    python experiments/bellman/gaussian_fields.py --steps 1000 --n-eval 1000 --jobs 3 --configs sliced_eps0.05 full_eps0.05 full_silverman_scaled
                                                             # the committed run (docs/bellman.md; ~15 CPU-min)
    python experiments/bellman/gaussian_fields.py            # d = 2, 5, 10; all five configurations, 2000 steps
    python experiments/bellman/gaussian_fields.py --quick    # smoke (< 1 min)
Writes experiments/results/bellman_gaussian_fields.json and .png.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]

# name: overrides of `agm bellman train` keys (the library's config; docs/bellman.md)
CONFIGS = {
    "sliced_eps0.05": ["field.kernel=sliced", "field.eps=0.05"],
    "full_eps0.05": ["field.kernel=full", "field.eps=0.05"],
    "full_silverman": ["field.kernel=full", "field.eps_rule=silverman"],
    "full_silverman_scaled": ["field.kernel=full", "field.eps_rule=silverman", "field.scale=kernel"],
    "full_silverman_annealed": ["field.kernel=full", "field.eps_rule=silverman", "field.scale=kernel", "field.eps_levels=[1,4,16]"],
}


def make_gaussian(d: int, seed: int):
    """(mu, Sigma) of a Gaussian in standardised coordinates (float64)."""
    g = np.random.default_rng(1000 + seed * 31 + d)
    q, _ = np.linalg.qr(g.standard_normal((d, d)))
    lam = np.linspace(0.5, 1.5, d)
    cov = (q * lam) @ q.T
    mu = 0.5 * g.standard_normal(d)
    sd = np.sqrt(np.diag(cov))
    return torch.tensor(np.zeros(d)), torch.tensor(cov / np.outer(sd, sd)), mu  # standardised: mean 0, unit diagonal


class Gauss:
    """Closed-form N(mu, S): density, gradient, score; and the smoothed h and minimiser g* for a kernel."""

    def __init__(self, mu: torch.Tensor, cov: torch.Tensor) -> None:
        self.mu, self.cov, self.d = mu, cov, mu.numel()
        self.prec = torch.linalg.inv(cov)
        self.logdet = float(torch.logdet(cov))
        self.chol = torch.linalg.cholesky(cov)

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        return self.mu + torch.randn(n, self.d, generator=gen, dtype=torch.float64) @ self.chol.T

    def logp(self, x):
        z = x - self.mu
        return -0.5 * ((z @ self.prec) * z).sum(-1) - 0.5 * self.logdet - 0.5 * self.d * math.log(2 * math.pi)

    def p(self, x):
        return self.logp(x).exp()

    def score(self, x):
        return -(x - self.mu) @ self.prec

    def grad_p(self, x):
        return self.p(x)[:, None] * self.score(x)


def smoothed(gauss: Gauss, kernel: str, eps: float, w: torch.Tensor | None):
    """(h, grad h) callables of x for the full kernel (closed form) or the sliced one (average over the fixed unit
    directions w (M, d), each term closed form)."""
    if kernel == "full":
        hg = Gauss(gauss.mu, gauss.cov + eps * torch.eye(gauss.d, dtype=torch.float64))
        return hg.p, hg.grad_p
    var = ((w @ gauss.cov) * w).sum(-1) + eps  # (M,)

    def h(x):
        u = (x - gauss.mu) @ w.T  # (B, M)
        return (torch.exp(-0.5 * u**2 / var) / torch.sqrt(2 * math.pi * var)).mean(1)

    def grad_h(x):
        u = (x - gauss.mu) @ w.T
        k = torch.exp(-0.5 * u**2 / var) / torch.sqrt(2 * math.pi * var)
        return (-(k * u / var) @ w) / w.shape[0]

    return h, grad_h


def minimiser_pair(gauss: Gauss, h, grad_h):
    """(f*, g*) = (h, (grad h + h grad log p) / 2) (docs/bellman.md)."""
    return h, (lambda x: 0.5 * (grad_h(x) + h(x)[:, None] * gauss.score(x)))


def unit_dirs(m: int, d: int, gen: torch.Generator) -> torch.Tensor:
    w = torch.randn(m, d, generator=gen, dtype=torch.float64)
    return w / w.norm(dim=1, keepdim=True)


def rel_l2(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).pow(2).sum().sqrt() / b.pow(2).sum().sqrt().clamp_min(1e-300))


def mean_cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-300).mean())


def field_errors(f_fn, g_fn, gauss: Gauss, h, g_star, x: torch.Tensor) -> dict:
    """Learned (f, g) vs truth (p, grad p), vs the minimisers (h, g*), and the learned pair's stationary score."""
    xr = x.clone().requires_grad_(True)
    f = f_fn(xr)
    (df,) = torch.autograd.grad(f.sum(), xr)
    with torch.no_grad():
        f, g = f.detach(), g_fn(x).detach()
        p, gp, sc, hx, gs = gauss.p(x), gauss.grad_p(x), gauss.score(x), h(x), g_star(x)
        s = (2 * g - df) / f[:, None]
        ok = f > 0
        return {
            "rel_l2_f_vs_p": rel_l2(f, p), "rel_l2_f_vs_h": rel_l2(f, hx), "median_f_over_p": float((f / p).median()),
            "median_f_over_h": float((f / hx).median()), "median_h_over_p": float((hx / p).median()),
            "rel_l2_g_vs_grad_p": rel_l2(g, gp), "rel_l2_g_vs_g_star": rel_l2(g, gs),
            "cos_g_grad_p": mean_cos(g, gp), "cos_g_g_star": mean_cos(g, gs),
            "cos_g_star_grad_p": mean_cos(gs, gp),
            "f_positive_fraction": float(ok.double().mean()),
            "cos_implied_score": mean_cos(s[ok], sc[ok]), "rel_l2_implied_score": rel_l2(s[ok], sc[ok]),
        }


def sample_metrics(xs: torch.Tensor, ref: torch.Tensor, seed: int) -> dict:
    from agm.metrics import energy_distance, mmd, wasserstein2

    ok = torch.isfinite(xs).all(1)
    out = {"finite_fraction": float(ok.double().mean())}
    escaped = ok & (xs.abs().amax(1) > 1e6)  # finite but far beyond the data: POT's W2 overflows on these
    out["escaped_fraction"] = float(escaped.double().mean())
    if escaped.any():
        return out
    xs = xs[ok]
    if xs.shape[0] >= 2:
        out.update({"w2": wasserstein2(xs, ref, max_samples=None), "mmd": mmd(xs, ref, max_samples=None, seed=seed),
                    "energy": energy_distance(xs, ref, max_samples=None, seed=seed)})
    return out


def run_dim(d: int, seed: int, names: list[str], steps: int, n_train: int, n_eval: int, sample_steps: int) -> dict:
    torch.set_num_threads(1)
    from agm.methods.bellman.dynamics import BellmanDynamics
    from agm.methods.bellman.run import base_eps, fit_fields, load_config, sample_fields

    mu, cov, _ = make_gaussian(d, seed)
    gauss = Gauss(mu, cov)
    gen = torch.Generator().manual_seed(seed)
    x_train = gauss.sample(n_train, gen).float()
    x_eval = gauss.sample(n_eval, gen)
    ref = gauss.sample(n_eval, gen)
    x0 = torch.randn(n_eval, d, generator=gen, dtype=torch.float64)
    w_eval = unit_dirs(4096, d, gen)
    w_samp = unit_dirs(256, d, gen)
    out = {"d": d, "seed": seed, "mean": mu.tolist(), "cov_eigenvalues": torch.linalg.eigvalsh(cov).tolist(),
           "floor": sample_metrics(gauss.sample(n_eval, gen), ref, seed), "configs": {}}
    sampler_overrides = [f"sample.steps={sample_steps}"]
    # sampler-only control: the exact pair (p, grad p)
    cfg0 = load_config(None, sampler_overrides)
    bd = BellmanDynamics(steps=sample_steps, rel_step=cfg0.sample.rel_step)
    xs = bd.sample(gauss.grad_p, x0, gauss.p, generator=torch.Generator().manual_seed(seed + 1))
    out["exact_p_pair"] = {**sample_metrics(xs, ref, seed), "eta": bd.last_stats["eta"], "frozen_fraction": bd.last_stats["frozen_fraction"]}
    for name in names:
        cfg = load_config(None, [*CONFIGS[name], f"train.steps={steps}", f"seed={seed}", *sampler_overrides])
        meta = {"data_shape": [d], "n_train": n_train}
        eps = base_eps(cfg, meta)
        kernel = cfg.field.kernel
        t0 = time.time()
        nets, meta, log = fit_fields(cfg, x_train)
        train_s = time.time() - t0
        nets64 = {k: v.double() for k, v in nets.items()}
        rec = {"overrides": CONFIGS[name], "eps": eps, "kernel": kernel, "train_s": train_s, "final_loss": log[-1] if log else None}
        levels = [float(m) * eps for m in cfg.field.eps_levels] or [eps]
        rec["levels"] = {}
        for e in levels:
            h, grad_h = smoothed(gauss, kernel, e, w_eval)
            f_star, g_star = minimiser_pair(gauss, h, grad_h)
            f_fn = (lambda u, e=e: nets64["f"](u, e)) if cfg.field.eps_levels else nets64["f"]
            g_fn = (lambda u, e=e: nets64["g"](u, e)) if cfg.field.eps_levels else nets64["g"]
            errs = field_errors(f_fn, g_fn, gauss, h, g_star, x_eval)
            errs["minimiser_rel_l2_f_star_vs_p"] = rel_l2(f_star(x_eval), gauss.p(x_eval))
            errs["minimiser_rel_l2_g_star_vs_grad_p"] = rel_l2(g_star(x_eval), gauss.grad_p(x_eval))
            rec["levels"][f"{e:.4g}"] = errs
        t0 = time.time()
        xs = sample_fields(nets64, cfg, meta, x0.clone(), generator=torch.Generator().manual_seed(seed + 2))
        rec["samples"] = {**sample_metrics(xs, ref, seed), "sample_s": time.time() - t0}
        # sampler-only control: the exact minimiser pair of this kernel and eps (256 fixed directions for the sliced h:
        # any positive h keeps p stationary, docs/bellman.md)
        h, grad_h = smoothed(gauss, kernel, eps, w_samp)
        f_star, g_star = minimiser_pair(gauss, h, grad_h)
        bd = BellmanDynamics(steps=sample_steps, rel_step=cfg.sample.rel_step)
        xs = bd.sample(g_star, x0.clone(), f_star, generator=torch.Generator().manual_seed(seed + 3))
        rec["exact_minimiser_pair"] = {**sample_metrics(xs, ref, seed), "eta": bd.last_stats["eta"],
                                       "frozen_fraction": bd.last_stats["frozen_fraction"]}
        out["configs"][name] = rec
        lv = rec["levels"][f"{levels[-1] if not cfg.field.eps_levels else levels[0]:.4g}"]
        print(f"d={d} {name:26s} eps={eps:.3g} f/p rel {lv['rel_l2_f_vs_p']:.3g} f/h rel {lv['rel_l2_f_vs_h']:.3g} "
              f"g/gradp rel {lv['rel_l2_g_vs_grad_p']:.3g} g/g* rel {lv['rel_l2_g_vs_g_star']:.3g} cos(s) {lv['cos_implied_score']:.3f} "
              f"| W2 {rec['samples'].get('w2', float('nan')):.3f} exact-pair W2 {rec['exact_minimiser_pair'].get('w2', float('nan')):.3f} "
              f"floor {out['floor']['w2']:.3f} ({train_s:.0f}s)", flush=True)
    return out


def _job(job: tuple) -> dict:
    return run_dim(*job)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke: d = 2 only, 100 steps")
    ap.add_argument("--dims", type=int, nargs="+", default=[2, 5, 10])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=2000, help="training steps (default 2000, the config default)")
    ap.add_argument("--sample-steps", type=int, default=2000)
    ap.add_argument("--n-eval", type=int, default=2000, help="held-out points, samples and reference points (default 2000)")
    ap.add_argument("--plot-only", action="store_true", help="redraw the PNG from an existing --out JSON")
    ap.add_argument("--jobs", type=int, default=1, help="parallel worker processes (1 thread each)")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bellman_gaussian_fields.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.plot_only:
        plot(json.loads(Path(args.out).read_text()), Path(args.out).with_suffix(".png"))
        return 0
    dims = [2] if args.quick else args.dims
    steps = 100 if args.quick else args.steps
    sample_steps = 200 if args.quick else args.sample_steps
    t0 = time.time()
    res = {"command": " ".join(["python", "experiments/bellman/gaussian_fields.py", *(argv if argv is not None else sys.argv[1:])]),
           "settings": {"train_steps": steps, "n_train": 20000, "n_eval": args.n_eval, "sample_steps": sample_steps, "configs": CONFIGS},
           "dims": []}
    jobs = [(d, args.seed, [c], steps, 20000, args.n_eval, sample_steps) for d in dims for c in args.configs]
    from agm.training.sweep import run_sweep

    parts = run_sweep(jobs, _job, key=lambda j: f"d={j[0]}/{j[2][0]}", workers=args.jobs)
    for d in dims:  # merge the per-configuration records of one dimension (shared items are identical: same seeds)
        mine = [p for p in parts if p["d"] == d]
        merged = {**mine[0], "configs": {}}
        for p in mine:
            merged["configs"].update(p["configs"])
        res["dims"].append(merged)
    res["wall_s"] = time.time() - t0
    from agm.training.results import write_result

    out = Path(args.out)
    write_result(out, res)
    plot(res, out.with_suffix(".png"))
    print(f"wrote {out} in {res['wall_s']:.0f}s")
    return 0


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = [r["d"] for r in res["dims"]]
    names = list(res["dims"][0]["configs"])
    panels = [("rel_l2_f_vs_p", "rel. L2 error of f vs p"), ("rel_l2_f_vs_h", "rel. L2 error of f vs its minimiser h"),
              ("rel_l2_g_vs_grad_p", "rel. L2 error of g vs grad p"), ("cos_implied_score", "cos(learned (2g - grad f)/f, grad log p)"),
              ("w2", "sample W2 to the Gaussian (missing: diverged)")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    for ax, (key, title) in zip(axes, panels):
        for name in names:
            ys = []
            for r in res["dims"]:
                c = r["configs"][name]
                if key == "w2":  # diverged samples (escaped, or W2 0 with NaN MMD from an overflow in an older run): not drawn
                    smp = c["samples"]
                    bad = smp.get("escaped_fraction", 0) > 0 or not np.isfinite(smp.get("mmd", np.nan))
                    ys.append(np.nan if bad else smp.get("w2", np.nan))
                else:
                    first = next(iter(c["levels"].values())) if "annealed" not in name else c["levels"][min(c["levels"], key=float)]
                    ys.append(first[key])
            ax.plot(dims, ys, "o-", label=name)
        if key == "w2":
            ax.plot(dims, [r["floor"]["w2"] for r in res["dims"]], "k--", label="data floor")
            ax.plot(dims, [r["exact_p_pair"].get("w2", np.nan) for r in res["dims"]], "k:", label="exact (p, grad p) sampler")
        if key.startswith("rel_l2") or key == "w2":
            ax.set_yscale("log")
        ax.set_xlabel("d")
        ax.set_title(title, fontsize=9)
    axes[-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
