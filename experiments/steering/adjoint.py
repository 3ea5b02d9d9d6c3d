"""Reward fine-tuning of a pretrained 2-D flow-matching model: Adjoint Matching vs other SOC losses.

Exact optimum: p*(x) ∝ p_base(x) exp(lam r(x)) with p_base = the pretrained model's own law (ODE samples),
drawn by rejection sampling. Reports W2 / energy distance to p*, mean reward, and gradient variance
(trace of the covariance of minibatch gradients, raw and relative to |mean grad|^2) for every loss.

    .venv/bin/python experiments/steering/adjoint.py            # full run (writes experiments/results/steering_adjoint.json)
    .venv/bin/python experiments/steering/adjoint.py --quick    # smoke test (< 1 min)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from agm.methods.steering.soc import SOC_LOSSES, MemorylessSchedule, finetune, gradient_variance, make_problem
from agm.methods.steering import make_reward, sample_flow, tilted_rejection_sample, toy_data, train_flow_model
from agm.metrics import energy_distance, wasserstein2  # unbiased energy distance on a seeded subsample; exact W2
from agm.training.results import write_result


def merge(files: list[str], out: str) -> int:
    """One results JSON from per-loss runs of this script (their references must agree: same base, same optimum)."""
    recs = [json.loads(Path(f).read_text()) for f in files]
    ref = recs[0]["reference"]
    for r in recs[1:]:
        if r["reference"] != ref:
            raise SystemExit(f"{files}: the per-loss runs have different references (base / optimum); not merged")
    merged = {"command": "; ".join(r["command"] for r in recs) + "; then --merge", "settings": [r["settings"] for r in recs],
              "seeds": recs[0]["seeds"], "reference": ref, "per_seed": {}, "summary": {},
              "wall_seconds": max(r["wall_seconds"] for r in recs), "parts": files}
    for r in recs:
        merged["per_seed"].update(r["per_seed"])
        merged["summary"].update(r["summary"])
    write_result(out, merged)
    _plot(merged["reference"], merged["per_seed"], list(merged["per_seed"]), out)
    print(f"wrote {out}")
    return 0


def _plot(ref: dict, per: dict, losses: list[str], out: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name in losses:
            c = per[name][0]["w2_curve"]
            ax.plot([q["iteration"] for q in c], [max(q["energy"], 1e-4) for q in c], marker="o", label=name)
        ax.axhline(ref["energy_base_to_optimum"], color="k", ls="--", lw=0.8, label="base")
        ax.set_yscale("log"); ax.set_xlabel("iteration"); ax.set_ylabel("energy distance to optimum (first seed)"); ax.legend(fontsize=6)
        fig.tight_layout(); fig.savefig(Path(out).with_suffix(".png"), dpi=80)
    except Exception as exc:  # plotting is optional
        print("plot failed:", exc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="8gaussians", help="built-in 2-D toy data set (agm.data.toy)")
    ap.add_argument("--reward", default="linear", choices=["linear", "quadratic"], help="reward: linear x_1 or quadratic -(1/2)|x - (1,1)|^2")
    ap.add_argument("--lam", type=float, default=0.5, help="reward multiplier (AM's lambda)")
    ap.add_argument("--losses", default=",".join(SOC_LOSSES), help="comma-separated SOC losses to compare")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated fine-tuning seeds")
    ap.add_argument("--iterations", type=int, default=600, help="fine-tuning iterations per loss")
    ap.add_argument("--batch", type=int, default=64, help="trajectories per iteration")
    ap.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    ap.add_argument("--steps", type=int, default=20, help="K, EM steps of the memoryless SDE")
    ap.add_argument("--base-steps", type=int, default=3000, help="training steps of the pretrained base flow model")
    ap.add_argument("--n-eval", type=int, default=1500, help="samples per evaluation")
    ap.add_argument("--out", default="experiments/results/steering_adjoint.json", help="results JSON (plot written beside it)")
    ap.add_argument("--pool", type=int, default=60000, help="base-model samples for the rejection-sampled optimum")
    ap.add_argument("--grad-batches", type=int, default=12, help="independent minibatches for the gradient-variance estimate")
    ap.add_argument("--base-cache", default=None, help="file of the base model's weights: loaded if it exists, else written after training (lets per-loss processes share one base)")
    ap.add_argument("--base-only", action="store_true", help="train (and cache) the base model, then stop")
    ap.add_argument("--merge", nargs="+", default=None, help="merge per-loss result files (same settings) into --out, then stop")
    ap.add_argument("--quick", action="store_true", help="smoke mode (< 1 min): one seed, short training, few samples")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.iterations, args.base_steps, args.n_eval, args.pool, args.grad_batches = "0", 10, 300, 500, 8000, 3
        if args.out == ap.get_default("out"):
            args.out = "/tmp/steering_adjoint_quick.json"
    torch.set_num_threads(1)
    t_start = time.time()
    if args.merge:
        return merge(args.merge, args.out)
    if args.base_cache and Path(args.base_cache).exists():
        from agm.nets import TimeMLP

        base = TimeMLP(2, hidden=128, depth=3)
        base.load_state_dict(torch.load(args.base_cache))
        base.eval()
    else:
        data = toy_data(args.dataset, 20000, seed=123)
        base = train_flow_model(data, hidden=128, steps=args.base_steps, seed=0)
        if args.base_cache:
            torch.save(base.state_dict(), args.base_cache)
    if args.base_only:
        return 0
    r = make_reward(args.reward, 2)
    pool = sample_flow(base, args.pool, 2, steps=100, seed=999)
    opt = tilted_rejection_sample(pool, args.lam * r(pool), generator=torch.Generator().manual_seed(1))
    # independent base samples for reward-weighted regression (not the pool the optimum was drawn from)
    rwr_pool = sample_flow(base, min(20000, args.pool), 2, steps=100, seed=998)
    opt_a, opt_b = opt[: len(opt) // 2], opt[len(opt) // 2:]
    ref = {
        "n_optimum_samples": len(opt),
        "w2_base_to_optimum": wasserstein2(pool[-args.n_eval:], opt_a[: args.n_eval], max_samples=args.n_eval),
        "energy_base_to_optimum": energy_distance(pool[-args.n_eval:], opt_a[: args.n_eval]),
        "w2_optimum_to_optimum (noise floor)": wasserstein2(opt_b[: args.n_eval], opt_a[: args.n_eval], max_samples=args.n_eval),
        "energy_optimum_to_optimum (noise floor)": energy_distance(opt_b[: args.n_eval], opt_a[: args.n_eval]),
        "mean_reward_base": float(r(pool).mean()),
        "mean_reward_optimum": float(r(opt).mean()),
    }
    print(json.dumps(ref), flush=True)
    losses = args.losses.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    per: dict[str, list[dict]] = {k: [] for k in losses}
    for seed in seeds:
        for name in losses:
            torch.manual_seed(seed)
            prob = make_problem(base, r, 2, reward_multiplier=args.lam, steps=args.steps,
                                schedule=MemorylessSchedule(1.0 / args.steps), base_pool=rwr_pool)
            gv0 = gradient_variance(prob, name, batch=args.batch, n_batches=args.grad_batches, seed=100 + seed)
            t0 = time.time()
            curve = []

            def cb(it: int, lv: float, info: dict) -> None:
                if (it + 1) % max(1, args.iterations // 5) == 0:
                    s = sample_flow(prob.ft, 1500, 2, steps=50, seed=7)
                    curve.append({"iteration": it + 1, "energy": energy_distance(s, opt_a[:1500])})  # 1500 samples each

            hist = finetune(prob, name, iterations=args.iterations, batch=args.batch, lr=args.lr, seed=seed, callback=cb)
            train_s = time.time() - t0
            gv1 = gradient_variance(prob, name, batch=args.batch, n_batches=args.grad_batches, seed=200 + seed)
            s = sample_flow(prob.ft, args.n_eval, 2, steps=100, seed=11 + seed)
            rec = {
                "seed": seed,
                "w2_to_optimum": wasserstein2(s, opt_a[: args.n_eval], max_samples=args.n_eval),
                "energy_to_optimum": energy_distance(s, opt_a[: args.n_eval]),
                "mean_reward": float(r(s).mean()),
                "grad_var_init": gv0,
                "grad_var_final": gv1,
                "train_seconds": train_s,
                "final_loss": float(np.mean(hist[-20:])),
                "w2_curve": curve,
            }
            per[name].append(rec)
            print(name, json.dumps({k: v for k, v in rec.items() if k != "w2_curve"}), flush=True)
    summary = {}
    for name, recs in per.items():
        summary[name] = {}
        for key in ("w2_to_optimum", "energy_to_optimum", "mean_reward", "train_seconds"):
            v = np.array([q[key] for q in recs])
            summary[name][key] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
        for when in ("grad_var_init", "grad_var_final"):
            for key in ("trace_cov", "relative"):
                v = np.array([q[when][key] for q in recs])
                summary[name][f"{when}.{key}"] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    out = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "settings": vars(args),
        "seeds": seeds,
        "reference": ref,
        "per_seed": per,
        "summary": summary,
        "wall_seconds": time.time() - t_start,
    }
    write_result(args.out, out)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        ax[0].scatter(*opt_a[:2000].T, s=2, alpha=0.4, label="exact optimum")
        ax[0].set_title("tilted optimum (rejection)")
        for name in losses:
            c = per[name][0]["w2_curve"]
            ax[1].plot([q["iteration"] for q in c], [q["energy"] for q in c], marker="o", label=name)
        ax[1].axhline(ref["energy_base_to_optimum"], color="k", ls="--", lw=0.8, label="base")
        ax[1].axhline(ref["energy_optimum_to_optimum (noise floor)"], color="gray", ls=":", lw=0.8, label="floor")
        ax[1].set_yscale("log"); ax[1].set_xlabel("iteration"); ax[1].set_ylabel("energy distance to optimum (seed 0)"); ax[1].legend(fontsize=6)
        fig.tight_layout(); fig.savefig(Path(args.out).with_suffix(".png"), dpi=80)
    except Exception as exc:  # plotting is optional
        print("plot failed:", exc)
    print(f"wrote {args.out} in {time.time() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
