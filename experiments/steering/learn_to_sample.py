"""Learning to sample a frozen 2-D flow model by inverse RL (Bourdrez, Vérine, Cappé 2026;
arXiv 2602.08689): learned per-step schedule vs the default (uniform Euler) schedule
at EQUAL network evaluations (NFE = horizon N; every action costs exactly one evaluation).

For each data set, NFE and action family, a policy over discrete solver modifications is trained by
policy gradient against a t-conditioned discriminator (reverse-KL occupancy matching, arXiv 2602.08689);
no reward is given. The greedy schedule of the trained policy is then compared with the identity
(default) schedule on the same initial noise: energy distance and W2 to held-out data, per policy seed,
plus the data-vs-data noise floor.

    .venv/bin/python experiments/steering/learn_to_sample.py           # full run (~6 min on 1 thread)
    .venv/bin/python experiments/steering/learn_to_sample.py --quick   # smoke test (< 1 min)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from agm.methods.steering.learn_to_sample import ACTION_FAMILIES, DIVERGENCES, FlowSamplerMDP, IRLConfig, SamplerPolicy, schedule_from_policy, train_sampler_policy
from agm.methods.steering import toy_data, train_flow_model
from agm.metrics import energy_distance, wasserstein2  # unbiased energy distance on a seeded subsample; exact W2
from agm.training.results import write_result

Tensor = torch.Tensor


def evaluate(mdp: FlowSamplerMDP, policy: SamplerPolicy | None, data: Tensor, n: int, seed: int) -> dict:
    """Energy distance and W2 of the final states to held-out data; identity schedule when policy is None.
    The same seed gives the same initial noise for both schedules (paired comparison)."""
    g = torch.Generator().manual_seed(seed)
    pol = policy if policy is not None else SamplerPolicy(mdp.horizon, mdp.n_actions)
    acts = None if policy is not None else torch.full((mdp.horizon,), mdp.identity_action)
    with torch.no_grad():
        ro = mdp.rollout(pol, n, generator=g, greedy=policy is not None, actions=acts)
    x = ro.xs[-1]
    return {"energy": energy_distance(x, data[:n]), "w2": wasserstein2(x, data[:n], max_samples=n, seed=seed)}



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="8gaussians,moons", help="comma-separated built-in 2-D toy sets (agm.data.toy)")
    ap.add_argument("--nfe", default="4,8", help="comma-separated horizons N (= network evaluations per sample)")
    ap.add_argument("--families", default="step,churn", help=f"comma-separated action families, from {ACTION_FAMILIES}")
    ap.add_argument("--divergence", default="reverse_kl", choices=DIVERGENCES, help="f-divergence of the occupancy matching")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated policy seeds")
    ap.add_argument("--iterations", type=int, default=200, help="policy-gradient iterations")
    ap.add_argument("--batch", type=int, default=256, help="trajectories per iteration")
    ap.add_argument("--model-steps", type=int, default=2000, help="training steps of the frozen flow model")
    ap.add_argument("--n-eval", type=int, default=2000, help="samples per evaluation")
    ap.add_argument("--quick", action="store_true", help="smoke mode: one data set, NFE 4, family step, one seed, few iterations")
    ap.add_argument("--out", default="experiments/results/steering_learn_to_sample.json", help="results JSON (plot written beside it)")
    args = ap.parse_args(argv)
    if args.quick:
        args.datasets, args.nfe, args.families, args.seeds = "8gaussians", "4", "step", "0"
        args.iterations, args.model_steps, args.n_eval = 30, 300, 500
        if args.out == ap.get_default("out"):
            args.out = "/tmp/steering_learn_to_sample_quick.json"
    torch.set_num_threads(1)
    t_start = time.time()
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = []
    floors = {}
    for ds in args.datasets.split(","):
        data = toy_data(ds, 20000, seed=1)
        held = toy_data(ds, 2 * args.n_eval, seed=77)
        floors[ds] = {"energy_data_vs_data": energy_distance(held[: args.n_eval], held[args.n_eval:]),
                      "w2_data_vs_data": wasserstein2(held[: args.n_eval], held[args.n_eval:], max_samples=args.n_eval)}
        net = train_flow_model(data, hidden=128, steps=args.model_steps, seed=0)
        for nfe in [int(v) for v in args.nfe.split(",")]:
            for fam in args.families.split(","):
                mdp = FlowSamplerMDP(net, 2, nfe, family=fam)
                default = [evaluate(mdp, None, held, args.n_eval, seed=1000 + s) for s in seeds]
                for s, seed in enumerate(seeds):
                    torch.manual_seed(seed)
                    pol = SamplerPolicy(nfe, mdp.n_actions, identity_action=mdp.identity_action)
                    t0 = time.time()
                    logs = train_sampler_policy(mdp, pol, data, IRLConfig(iterations=args.iterations, batch=args.batch, divergence=args.divergence, seed=seed))
                    sched = schedule_from_policy(pol)
                    learned = evaluate(mdp, pol, held, args.n_eval, seed=1000 + s)
                    rec = {"dataset": ds, "nfe": nfe, "family": fam, "seed": seed, "train_seconds": time.time() - t0,
                           "schedule_values": [float(mdp.values[i]) for i in sched],
                           "learned": learned, "default": default[s],
                           "final_disc_loss": float(np.mean([q["disc_loss"] for q in logs[-20:]])),
                           "return_curve": [q["mean_return"] for q in logs[:: max(1, len(logs) // 20)]]}
                    runs.append(rec)
                    print(json.dumps({k: v for k, v in rec.items() if k != "return_curve"}), flush=True)
    summary = []
    for key in sorted({(q["dataset"], q["nfe"], q["family"]) for q in runs}):
        rs = [q for q in runs if (q["dataset"], q["nfe"], q["family"]) == key]
        row = {"dataset": key[0], "nfe": key[1], "family": key[2], "n_seeds": len(rs)}
        for m in ("energy", "w2"):
            le = np.array([q["learned"][m] for q in rs])
            de = np.array([q["default"][m] for q in rs])
            row[f"learned_{m}"] = float(le.mean())
            row[f"default_{m}"] = float(de.mean())
            row[f"learned_{m}_std"] = float(le.std(ddof=1)) if len(le) > 1 else 0.0
            row[f"default_{m}_std"] = float(de.std(ddof=1)) if len(de) > 1 else 0.0
            row[f"wins_{m}"] = int((le < de).sum())
        summary.append(row)
    out = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "settings": vars(args),
        "noise_floor": floors,
        "summary": summary,
        "runs": runs,
        "wall_seconds": time.time() - t_start,
    }
    write_result(args.out, out)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5))
        labels = [f"{r['dataset']}\nN={r['nfe']} {r['family']}" for r in summary]
        xs = np.arange(len(summary))
        ax.bar(xs - 0.2, [r["default_energy"] for r in summary], 0.4, yerr=[r["default_energy_std"] for r in summary], label="default (identity) schedule")
        ax.bar(xs + 0.2, [r["learned_energy"] for r in summary], 0.4, yerr=[r["learned_energy_std"] for r in summary], label="learned (IRL) schedule")
        ax.set_xticks(xs, labels, fontsize=6)
        ax.set_ylabel("energy distance to data")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(Path(args.out).with_suffix(".png"), dpi=80)
    except Exception as exc:  # plotting is optional
        print("plot failed:", exc)
    print(f"wrote {args.out} in {time.time() - t_start:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
