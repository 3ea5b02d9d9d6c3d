"""Where the Bellman Diffusion sampler goes wrong on a table (docs/bellman.md, "The tabular path").

Trains the fields of one configuration (overrides of `agm bellman train` keys) on one sklearn table and seed
(the split of experiments/bellman/tabular.py), then records: the final losses; f and ||g|| on the training rows and
on N(0, I) points (where the sampler starts); and the sampler's W2 to the held-out rows along the way (each level of an
annealed schedule in two halves), from x0 ~ N(0, I).

    python experiments/bellman/tabular_diagnose.py --name former field.kernel=sliced field.eps=0.05 train.steps=1000
Writes experiments/results/bellman_tabular_diagnose_<name>.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="label of the configuration (the JSON's file name)")
    ap.add_argument("--data", default="wine")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--particles", type=int, default=300)
    ap.add_argument("overrides", nargs="*", help="config keys, as for agm bellman train")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from tabular import split

    from agm.methods.bellman.dynamics import BellmanDynamics
    from agm.methods.bellman.run import base_eps, fit_fields, load_config
    from agm.metrics import wasserstein2
    from agm.training.results import write_result

    xtr, xte, _ = split(args.data, args.seed)
    cfg = load_config(None, ["train.batch_size=256", "train.lr=1e-3", f"seed={args.seed}", *args.overrides])
    t0 = time.time()
    nets, meta, log = fit_fields(cfg, xtr)
    eps = base_eps(cfg, meta)
    levels = [m * eps for m in sorted(cfg.field.eps_levels, reverse=True)] or [eps]
    f, g = nets["f"], nets["g"]
    call = (lambda n, x, e: n(x, e)) if cfg.field.eps_levels else (lambda n, x, e: n(x))
    gen = torch.Generator().manual_seed(7)
    xn = torch.randn(1000, xtr.shape[1], generator=gen)
    out = {"command": " ".join(["python", "experiments/bellman/tabular_diagnose.py", *(argv if argv is not None else sys.argv[1:])]),
           "set": args.data, "seed": args.seed, "overrides": args.overrides, "eps": eps, "final_log": log[-1] if log else None,
           "train_s": time.time() - t0, "levels": [], "trajectory": []}
    with torch.no_grad():
        for e in levels:
            fr, gr, fn, gn = call(f, xtr, e), call(g, xtr, e).norm(dim=1), call(f, xn, e), call(g, xn, e).norm(dim=1)
            out["levels"].append({"eps": e, "f_rows_median": float(fr.median()), "g_norm_rows_median": float(gr.median()),
                                  "g_norm_rows_max": float(gr.max()), "f_normal_min": float(fn.min()),
                                  "g_norm_normal_max": float(gn.max())})
    x = torch.randn(args.particles, xtr.shape[1], generator=gen)
    for e in levels:
        for half in range(2):
            if not torch.isfinite(x).all(1).any():
                break  # every particle is NaN/inf: nothing left to integrate
            bd = BellmanDynamics(steps=cfg.sample.steps // len(levels) // 2, rel_step=cfg.sample.rel_step)
            x = bd.sample(lambda u: call(g, u, e), x, lambda u: call(f, u, e), generator=gen)
            ok = torch.isfinite(x).all(1) & (x.abs().amax(1) < 1e6)
            w2 = wasserstein2(x[ok], xte, max_samples=None) if ok.sum() > 2 else float("nan")
            out["trajectory"].append({"eps": e, "half": half, "eta": bd.last_stats["eta"], "ok_fraction": float(ok.float().mean()), "w2": w2})
            print(out["trajectory"][-1], flush=True)
    print(out["final_log"], out["levels"])
    write_result(ROOT / "experiments" / "results" / f"bellman_tabular_diagnose_{args.name}.json", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
