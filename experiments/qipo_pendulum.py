"""QIPO (flow policy) vs behaviour cloning (same flow policy, beta = 0) vs the behaviour data on Pendulum-v1.

Offline data: agm's built-in mixed-quality Pendulum data set (agm.rl.offline.behaviour: expert with low noise,
expert with high noise, epsilon-expert, uniform random; equal shares). Normalised score = 100 (R - R_random) /
(R_expert - R_random) with the reference returns stored in the data set.

Per seed: (1) behaviour warm-up (plain CFM, K1 steps) -> pi_0; (2) in-support softmax Q-learning (K2 steps);
(3a) QIPO improvement for K3 steps from pi_0, support renewed every K_renew steps; (3b) BC: the same pi_0 trained
K3 more steps with plain CFM on the data (beta = 0). Both are evaluated every ``eval_every`` steps of phase 3.

    .venv/bin/python experiments/qipo_pendulum.py --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from agm.rl.offline import QIPO, QIPOConfig, evaluate_policy, generate_dataset, load_npz, normalized_score

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--env", default="Pendulum-v1", help="gymnasium environment id with a built-in expert")
    p.add_argument("--n-transitions", type=int, default=30_000, help="size of the generated data set")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the data set (shared by all training seeds)")
    p.add_argument("--beta", type=float, default=3.0, help="QIPO inverse temperature")
    p.add_argument("--behaviour-steps", type=int, default=2000, help="K1")
    p.add_argument("--q-steps", type=int, default=2000, help="K2")
    p.add_argument("--improve-steps", type=int, default=1500, help="K3")
    p.add_argument("--renew-every", type=int, default=300, help="K_renew")
    p.add_argument("--support-size", type=int, default=8, help="M")
    p.add_argument("--support-states", type=int, default=8192, help="states per support renewal")
    p.add_argument("--reward-scale", type=float, default=0.1, help="reward multiplier for Q-learning")
    p.add_argument("--gamma", type=float, default=0.99, help="discount")
    p.add_argument("--eval-every", type=int, default=300, help="evaluation period in phase 3")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per curve point")
    p.add_argument("--final-episodes", type=int, default=20, help="episodes of the final evaluation")
    p.add_argument("--best-of", type=int, default=8, help="N for the separately reported best-of-N action selection")
    p.add_argument("--out", default=str(ROOT / "experiments/results/qipo.json"), help="output JSON")
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    cache = Path(f"/tmp/agm_{args.env}_{args.n_transitions}_{args.data_seed}.npz")
    data = load_npz(cache) if cache.exists() else generate_dataset(args.env, args.n_transitions, seed=args.data_seed)
    if not cache.exists():
        data.save_npz(cache)
    ref_r, ref_e = data.meta["ref_random_return"], data.meta["ref_expert_return"]
    data_returns = data.episode_returns()
    cfg = QIPOConfig(
        beta=args.beta, support_size=args.support_size, q_support_size=args.support_size, reward_scale=args.reward_scale,
        gamma=args.gamma, behaviour_steps=args.behaviour_steps, q_steps=args.q_steps, improve_steps=args.improve_steps,
        renew_every=args.renew_every, policy_hidden=128, policy_depth=2, q_hidden=128, q_depth=2, sampler_steps=5,
        support_states=args.support_states,
    )
    low, high = [-2.0], [2.0]
    if args.env != "Pendulum-v1":
        import gymnasium as gym

        sp = gym.make(args.env).action_space
        low, high = sp.low.tolist(), sp.high.tolist()

    def score(returns):
        return float(np.mean(normalized_score(np.asarray(returns), ref_r, ref_e)))

    per_seed = []
    t_start = time.time()
    for seed in args.seeds:
        t0 = time.time()
        algo = QIPO(data, cfg, low, high, seed=seed)
        algo.train_behaviour()
        bc_policy = copy.deepcopy(algo.policy)
        ev_seed = 10_000 + 100 * seed
        pi0 = score(evaluate_policy(algo.act, args.env, args.eval_episodes, ev_seed))
        algo.train_q()
        curve_q, curve_bc = [(0, pi0)], [(0, pi0)]
        algo.improve(callback=lambda k: curve_q.append((k, score(evaluate_policy(algo.act, args.env, args.eval_episodes, ev_seed)))),
                     every=args.eval_every)
        final_q = evaluate_policy(algo.act, args.env, args.final_episodes, 50_000 + seed * 100)
        final_q_best = evaluate_policy(lambda o: algo.act(o, best_of=args.best_of), args.env, args.final_episodes, 50_000 + seed * 100)
        # BC: continue pi_0 with plain CFM (beta = 0) on the data for the same K3 steps
        bc = QIPO(data, cfg, low, high, seed=seed)
        bc.policy.load_state_dict(bc_policy.state_dict())
        bc.train_behaviour(args.improve_steps, callback=lambda k: curve_bc.append((k, score(evaluate_policy(bc.act, args.env, args.eval_episodes, ev_seed)))),
                           every=args.eval_every)
        final_bc = evaluate_policy(bc.act, args.env, args.final_episodes, 50_000 + seed * 100)
        rec = {
            "seed": seed,
            "qipo_final_score": score(final_q), "qipo_final_return": float(np.mean(final_q)),
            "qipo_best_of_n_score": score(final_q_best),
            "bc_final_score": score(final_bc), "bc_final_return": float(np.mean(final_bc)),
            "pi0_score": pi0,
            "curve_qipo": curve_q, "curve_bc": curve_bc,
            "qipo_log": algo.log, "seconds": time.time() - t0,
        }
        per_seed.append(rec)
        print(json.dumps({k: v for k, v in rec.items() if not k.startswith("curve") and k != "qipo_log"}), flush=True)

    def ms(key):
        v = np.array([r[key] for r in per_seed])
        return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}

    result = {
        "command": " ".join([sys.executable.replace(str(ROOT) + "/", "")] + [str(Path(sys.argv[0]).resolve().relative_to(ROOT))] + sys.argv[1:]),
        "env": args.env,
        "seeds": args.seeds,
        "settings": vars(args),
        "qipo_config": asdict(cfg),
        "dataset": {**data.meta, "episodes": int(len(data_returns)), "return_mean": float(data_returns.mean()),
                    "score_mean": score(data_returns), "score_std": float(np.std(normalized_score(data_returns, ref_r, ref_e)))},
        "per_seed": per_seed,
        "summary": {"qipo": ms("qipo_final_score"), "bc": ms("bc_final_score"), "pi0": ms("pi0_score"),
                    "qipo_best_of_n": ms("qipo_best_of_n_score"), "behaviour_data": score(data_returns)},
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                    "load_avg_at_end": os.getloadavg()},
        "wall_seconds": time.time() - t_start,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.3))
        for name, key, col in (("QIPO", "curve_qipo", "C0"), ("BC (beta=0)", "curve_bc", "C1")):
            xs = np.array([k for k, _ in per_seed[0][key]])
            ys = np.array([[v for _, v in r[key]] for r in per_seed])
            ax.plot(xs, ys.mean(0), color=col, label=name)
            ax.fill_between(xs, ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0), color=col, alpha=0.2)
        ax.axhline(score(data_returns), color="k", ls="--", label="behaviour data")
        ax.set_xlabel("phase-3 gradient steps")
        ax.set_ylabel("normalised score")
        ax.set_title(f"{args.env}, {len(args.seeds)} seeds")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out.with_suffix(".png"), dpi=90)
    except Exception as err:  # plotting is optional
        print("plot failed:", err)
    print(json.dumps(result["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
