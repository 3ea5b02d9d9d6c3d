"""Relative reward extraction (Nuti et al. 2023) from two pretrained 2-D flow models and steering.

Base model: trained on 8gaussians. Expert model: trained on the same data tilted by exp(r(x)), r(x) = k x_1
(exact rejection sampling). A reward net rho_psi(x, t) is fitted to the difference of the two models'
scores; we report its Spearman rank correlation with the true r (at t = 0.98, near the data end) and with
the exact relative reward rho*(x, t) = log E_{p_b(x1 | x_t = x)}[e^{r(x1)}] (empirical base law), and the
mean true reward of the base model steered by grad rho_psi at several guidance scales.

    .venv/bin/python experiments/steering/relative_reward.py            # full run (~4 min on 1 thread)
    .venv/bin/python experiments/steering/relative_reward.py --quick    # smoke test (< 1 min)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from agm.nets import TimeMLP
from agm.methods.steering.relative_reward import FlowScore, RelativeRewardLoss, steer_sample, train_relative_reward
from agm.methods.steering import EmpiricalFlowVelocity, make_reward, sample_flow, tilted_rejection_sample, toy_data, train_flow_model
from agm.metrics import energy_distance, wasserstein2  # unbiased energy distance on a seeded subsample; exact W2
from agm.training.results import write_result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--dataset", default="8gaussians", help="built-in 2-D toy data set (agm.data.toy)")
    ap.add_argument("--reward", default="linear", choices=["linear", "quadratic"], help="true reward: linear k x_1 or quadratic -(k/2)|x - (1,1)|^2")
    ap.add_argument("--reward-scale", type=float, default=1.0, help="k, the reward scale")
    ap.add_argument("--seeds", default="0,1,2", help="reward-network seeds")
    ap.add_argument("--targets", default="score,eps,velocity", help="regression targets; ablations use the first seed only")
    ap.add_argument("--model-steps", type=int, default=2500, help="training steps of each pretrained flow model")
    ap.add_argument("--reward-steps", type=int, default=1200, help="training steps of the reward network")
    ap.add_argument("--scales", default="0,0.5,1,2", help="comma-separated guidance scales w for steering")
    ap.add_argument("--n-eval", type=int, default=2000, help="samples per evaluation")
    ap.add_argument("--out", default="experiments/results/steering_relative_reward.json", help="results JSON (plot written beside it)")
    ap.add_argument("--quick", action="store_true", help="smoke mode (< 1 min): one seed, short training, few samples")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.targets, args.model_steps, args.reward_steps, args.scales, args.n_eval = "0", "score", 300, 100, "0,1", 500
        if args.out == ap.get_default("out"):
            args.out = "/tmp/steering_relative_reward_quick.json"
    torch.set_num_threads(1)
    t_start = time.time()
    r = make_reward(args.reward, 2, scale=args.reward_scale)
    base_data = toy_data(args.dataset, 20000, seed=1)
    pool = toy_data(args.dataset, 200000, seed=2)
    expert_data = tilted_rejection_sample(pool, r(pool), generator=torch.Generator().manual_seed(3))[:20000]
    base_net = train_flow_model(base_data, hidden=128, steps=args.model_steps, seed=0)
    expert_net = train_flow_model(expert_data, hidden=128, steps=args.model_steps, seed=0)
    base, expert = FlowScore(base_net), FlowScore(expert_net)
    mixed = torch.cat([base_data[:10000], expert_data[:10000]])
    # held-out evaluation points and the exact relative reward of the (empirical) base law
    g = torch.Generator().manual_seed(4)
    ev_x1 = torch.cat([toy_data(args.dataset, 1000, seed=5), expert_data[-1000:]])
    emp = EmpiricalFlowVelocity(base_data[:4000])
    r_emp = r(base_data[:4000])
    ref = {
        "mean_reward_base_data": float(r(base_data).mean()),
        "mean_reward_expert_data": float(r(expert_data).mean()),
    }
    base_s = sample_flow(base_net, args.n_eval, 2, seed=21)
    exp_s = sample_flow(expert_net, args.n_eval, 2, seed=21)
    ref["mean_reward_base_model"] = float(r(base_s).mean())
    ref["mean_reward_expert_model"] = float(r(exp_s).mean())
    ref["energy_base_model_to_expert_data"] = energy_distance(base_s, expert_data[:args.n_eval])
    ref["energy_expert_model_to_expert_data"] = energy_distance(exp_s, expert_data[:args.n_eval])
    print(json.dumps(ref), flush=True)
    scales = [float(s) for s in args.scales.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    for ti, target in enumerate(args.targets.split(",")):
        for seed in seeds if ti == 0 else seeds[:1]:
            torch.manual_seed(seed)
            net = TimeMLP(2, hidden=64, depth=3, out_dim=1, act="silu")
            loss = RelativeRewardLoss(base, expert, target=target)
            t0 = time.time()
            hist = train_relative_reward(net, loss, mixed, steps=args.reward_steps, batch=256, lr=1e-3, seed=seed)
            rec = {"target": target, "seed": seed, "train_seconds": time.time() - t0, "final_loss": float(np.mean(hist[-50:]))}
            with torch.no_grad():
                rho1 = net(ev_x1, torch.full((len(ev_x1),), 0.98)).reshape(-1)
            rec["spearman_vs_r_t0.98"] = float(spearmanr(rho1.numpy(), r(ev_x1).numpy())[0])
            for t in (0.25, 0.5, 0.75, 0.9):
                x0 = torch.randn(ev_x1.shape, generator=g)
                xt = t * ev_x1 + (1 - t) * x0
                tt = torch.full((len(xt),), t)
                with torch.no_grad():
                    exact = emp.log_tilt(xt, tt, r_emp)
                    pred = net(xt, tt).reshape(-1)
                rec[f"spearman_vs_rho*_t{t}"] = float(spearmanr(pred.numpy(), exact.numpy())[0])
            steer = {}
            for w in scales:
                s = steer_sample(base_net, net, loss, args.n_eval, 2, scale=w, seed=21)
                steer[str(w)] = {"mean_reward": float(r(s).mean()), "energy_to_expert_data": energy_distance(s, expert_data[:args.n_eval])}
            rec["steering"] = steer
            runs.append(rec)
            print(json.dumps(rec), flush=True)
    main_runs = [q for q in runs if q["target"] == args.targets.split(",")[0]]
    summary = {}
    keys = [k for k in main_runs[0] if k.startswith("spearman")]
    for k in keys:
        v = np.array([q[k] for q in main_runs])
        summary[k] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    for w in scales:
        for k in ("mean_reward", "energy_to_expert_data"):
            v = np.array([q["steering"][str(w)][k] for q in main_runs])
            summary[f"steer_w{w}.{k}"] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}
    out = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "settings": vars(args),
        "seeds": seeds,
        "reference": ref,
        "runs": runs,
        "summary_main_target": summary,
        "wall_seconds": time.time() - t_start,
    }
    write_result(args.out, out)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 3, figsize=(11, 3.5))
        ax[0].scatter(*base_s[:1500].T, s=2, alpha=0.4, label="base model")
        ax[0].scatter(*exp_s[:1500].T, s=2, alpha=0.4, label="expert model")
        ax[0].legend(fontsize=6); ax[0].set_title("pretrained models")
        ax[1].bar([str(w) for w in scales], [summary[f"steer_w{w}.mean_reward"]["mean"] for w in scales])
        ax[1].axhline(ref["mean_reward_expert_data"], color="k", ls="--", label="expert data")
        ax[1].set_xlabel("guidance scale w"); ax[1].set_ylabel("mean true reward"); ax[1].legend(fontsize=6)
        ts = [0.25, 0.5, 0.75, 0.9]
        ax[2].plot(ts, [summary[f"spearman_vs_rho*_t{t}"]["mean"] for t in ts], marker="o")
        ax[2].set_xlabel("t"); ax[2].set_ylabel("Spearman(rho_psi, rho*)"); ax[2].set_ylim(0, 1.02)
        fig.tight_layout(); fig.savefig(Path(args.out).with_suffix(".png"), dpi=80)
    except Exception as exc:
        print("plot failed:", exc)
    print(f"wrote {args.out} in {time.time() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
