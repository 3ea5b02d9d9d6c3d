"""QIPO (flow policy) vs behaviour cloning (same flow policy, beta = 0) vs the behaviour data's own return.

EFM paper (Zhang et al., ICLR 2025) section 5 / Algorithm 2; digest efm-qipo-rewards-irl-digest.md A.6, A.9.

Offline data: agm's built-in mixed-quality data sets (agm.methods.efm.behaviour), generated once per env with
data seed 0 and shared by all training seeds:
  * Pendulum-v1 (classic control): equal shares of expert + low noise, expert + high noise, epsilon-expert,
    uniform random (per episode).
  * InvertedPendulum-v5 (MuJoCo, needs ``mujoco``): episode shares 0.01 expert + low noise, 0.33 each of
    expert + high noise, epsilon-expert, random. Expert episodes last 1000 steps and the others ~5-20, so
    about half of the transitions come from the expert and half from failing policies (our choice, so that
    cloning the data is not already expert-level).
Normalised score = 100 (R - R_random) / (R_expert - R_random), reference returns stored in the data set
(clean scripted expert and uniform-random policy, 10 episodes each).

Per env and seed: (1) behaviour warm-up, plain CFM for K1 steps -> pi_0; (2) in-support softmax Q-learning,
K2 steps, support actions from pi_0; (3a) QIPO improvement for K3 steps from pi_0 with the support renewed every
K_renew steps; (3b) BC: the same pi_0 trained K3 more steps with plain CFM (beta = 0). Curves: evaluation every
``eval_every`` phase-3 steps; final: ``final_episodes`` fresh episodes. Best-of-N by Q is reported separately
(not part of the method as summarised, digest A.9.6).

    .venv/bin/python experiments/efm/qipo.py            # full run (the one in experiments/results/qipo.json)
    .venv/bin/python experiments/efm/qipo.py --quick    # smoke run (< 1 min), writes /tmp/qipo_quick.json
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from agm.training.results import machine_info

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MIXTURES = {
    "Pendulum-v1": None,  # equal shares of the four behaviours
    "InvertedPendulum-v5": {"expert_low_noise": 0.01, "expert_high_noise": 0.33, "epsilon_expert": 0.33, "random": 0.33},
}


def run_env(env_id: str, args, log) -> dict:
    import gymnasium as gym

    from agm.methods.efm import QIPO, QIPOConfig, evaluate_policy, generate_dataset, load_npz, normalized_score
    from agm.data.offline import check_env_compatible

    mixture = DEFAULT_MIXTURES.get(env_id)
    tag = "default" if mixture is None else "-".join(f"{v:g}" for v in mixture.values())
    cache = Path(f"/tmp/agm_qipo_{env_id}_{args.n_transitions}_{args.data_seed}_{tag}.npz")
    if cache.exists():
        data = load_npz(cache)
    else:
        data = generate_dataset(env_id, args.n_transitions, mixture=mixture, seed=args.data_seed)
        data.save_npz(cache)
    env = gym.make(env_id)
    check_env_compatible(data, env)
    low, high = env.action_space.low.tolist(), env.action_space.high.tolist()
    env.close()
    ref_r, ref_e = data.meta["ref_random_return"], data.meta["ref_expert_return"]
    data_returns = data.episode_returns()
    cfg = QIPOConfig(
        beta=args.betas[0], support_size=args.support_size, q_support_size=args.support_size, reward_scale=args.reward_scale,
        gamma=args.gamma, behaviour_steps=args.behaviour_steps, q_steps=args.q_steps, improve_steps=args.improve_steps,
        renew_every=args.renew_every, policy_hidden=args.hidden, policy_depth=2, q_hidden=args.hidden, q_depth=2,
        sampler_steps=args.sampler_steps, support_states=args.support_states,
    )

    def score(returns):
        return float(np.mean(normalized_score(np.asarray(returns), ref_r, ref_e)))

    per_seed = []
    for seed in args.seeds:
        t0 = time.time()
        algo = QIPO(data, cfg, low, high, seed=seed)
        algo.train_behaviour()
        pi0_state = copy.deepcopy(algo.policy.state_dict())
        opt0_state = copy.deepcopy(algo.opt.state_dict())
        ev_seed, fin_seed = 10_000 + 100 * seed, 50_000 + 100 * seed
        pi0 = score(evaluate_policy(algo.act, env_id, args.eval_episodes, ev_seed))
        q_losses = algo.train_q()
        rec = {"seed": seed, "pi0_score": pi0, "q_loss_last100": float(np.mean(q_losses[-100:])) if q_losses else None}
        for beta in args.betas:
            # phase 3 from the same pi_0 and the same (frozen) Q for every beta
            algo.policy.load_state_dict(pi0_state)
            algo.opt.load_state_dict(opt0_state)
            algo.cfg = replace(cfg, beta=beta)
            algo.gen.manual_seed(seed + 1)
            algo.log = []
            curve = [(0, pi0)]
            algo.improve(callback=lambda k: curve.append((k, score(evaluate_policy(algo.act, env_id, args.eval_episodes, ev_seed)))),
                         every=args.eval_every)
            final = evaluate_policy(algo.act, env_id, args.final_episodes, fin_seed)
            best = evaluate_policy(lambda o: algo.act(o, best_of=args.best_of), env_id, args.final_episodes, fin_seed)
            rec[f"qipo_b{beta:g}"] = {"final_score": score(final), "final_return": float(np.mean(final)),
                                       "best_of_n_score": score(best), "curve": curve, "log": algo.log}
        curve_bc = [(0, pi0)]
        bc = QIPO(data, cfg, low, high, seed=seed)
        bc.policy.load_state_dict(pi0_state)
        bc.opt.load_state_dict(opt0_state)
        bc.train_behaviour(args.improve_steps,
                           callback=lambda k: curve_bc.append((k, score(evaluate_policy(bc.act, env_id, args.eval_episodes, ev_seed)))),
                           every=args.eval_every)
        final_bc = evaluate_policy(bc.act, env_id, args.final_episodes, fin_seed)
        rec["bc"] = {"final_score": score(final_bc), "final_return": float(np.mean(final_bc)), "curve": curve_bc}
        rec["seconds"] = time.time() - t0
        per_seed.append(rec)
        log({"env": env_id, "seed": seed, "pi0": pi0, "bc": rec["bc"]["final_score"], "seconds": rec["seconds"],
             **{k: (v["final_score"], v["best_of_n_score"]) for k, v in rec.items() if k.startswith("qipo_b")}})

    def ms(get):
        v = np.array([get(r) for r in per_seed])
        return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}

    summary = {"behaviour_data": None, "bc": ms(lambda r: r["bc"]["final_score"]), "pi0": ms(lambda r: r["pi0_score"])}
    for beta in args.betas:
        summary[f"qipo_beta{beta:g}"] = ms(lambda r: r[f"qipo_b{beta:g}"]["final_score"])
        summary[f"qipo_beta{beta:g}_best_of_{args.best_of}"] = ms(lambda r: r[f"qipo_b{beta:g}"]["best_of_n_score"])
    ds = normalized_score(data_returns, ref_r, ref_e)
    return {
        "env": env_id,
        "qipo_config": asdict(cfg),
        "dataset": {**data.meta, "episodes": int(len(data_returns)), "return_mean": float(data_returns.mean()),
                    "score_mean": float(ds.mean()), "score_std": float(ds.std())},
        "per_seed": per_seed,
        "summary": {**summary, "behaviour_data": float(ds.mean())},
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = list(result["envs"])
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.4), squeeze=False)
    for ax, env_id in zip(axes[0], envs):
        r = result["envs"][env_id]
        curves = [(f"QIPO beta={b:g}", lambda s, b=b: s[f"qipo_b{b:g}"]["curve"]) for b in result["settings"]["betas"]]
        curves.append(("BC (beta=0)", lambda s: s["bc"]["curve"]))
        for i, (name, get) in enumerate(curves):
            col = f"C{i}"
            xs = np.array([k for k, _ in get(r["per_seed"][0])])
            ys = np.array([[v for _, v in get(s)] for s in r["per_seed"]])
            ax.plot(xs, ys.mean(0), color=col, label=name)
            ax.fill_between(xs, ys.mean(0) - ys.std(0), ys.mean(0) + ys.std(0), color=col, alpha=0.2)
        ax.axhline(r["summary"]["behaviour_data"], color="k", ls="--", label="behaviour data")
        ax.set_xlabel("phase-3 gradient steps")
        ax.set_ylabel("normalised score")
        ax.set_title(f"{env_id}, {len(r['per_seed'])} seeds (mean ± sd)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke mode (< 1 min): tiny budgets, 1 seed, Pendulum only")
    p.add_argument("--envs", nargs="+", default=["Pendulum-v1", "InvertedPendulum-v5"], help="gymnasium env ids with a built-in expert")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--n-transitions", type=int, default=30_000, help="size of each generated data set")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the data sets (shared by all training seeds)")
    p.add_argument("--betas", type=float, nargs="+", default=[3.0, 10.0, 30.0],
                   help="QIPO inverse temperatures; phase 3 is run for each from the same pi_0 and Q")
    p.add_argument("--behaviour-steps", type=int, default=3000, help="K1: behaviour warm-up steps")
    p.add_argument("--q-steps", type=int, default=3000, help="K2: Q-learning steps")
    p.add_argument("--improve-steps", type=int, default=2000, help="K3: Q-weighted improvement steps")
    p.add_argument("--renew-every", type=int, default=400, help="K_renew: support renewal period")
    p.add_argument("--support-size", type=int, default=8, help="M: support actions per state")
    p.add_argument("--support-states", type=int, default=8192, help="states per support renewal (compute saving)")
    p.add_argument("--hidden", type=int, default=128, help="hidden width of policy and Q MLPs (depth 2)")
    p.add_argument("--sampler-steps", type=int, default=5, help="Euler steps of the flow policy")
    p.add_argument("--reward-scale", type=float, default=0.1, help="reward multiplier for Q-learning")
    p.add_argument("--gamma", type=float, default=0.99, help="discount")
    p.add_argument("--eval-every", type=int, default=500, help="evaluation period in phase 3 (learning curves)")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per curve point")
    p.add_argument("--final-episodes", type=int, default=20, help="episodes of the final evaluation")
    p.add_argument("--best-of", type=int, default=8, help="N of the separately reported best-of-N action selection")
    p.add_argument("--out", default=None, help="output JSON (default experiments/results/qipo.json; /tmp/qipo_quick.json with --quick)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.envs, args.seeds, args.n_transitions = ["Pendulum-v1"], [0], 3000
        args.behaviour_steps = args.q_steps = args.improve_steps = 100
        args.renew_every, args.eval_every, args.support_states = 50, 50, 512
        args.eval_episodes = args.final_episodes = 2
    out = Path(args.out or ("/tmp/qipo_quick.json" if args.quick else ROOT / "experiments/results/qipo.json"))
    t_start = time.time()
    result = {
        "command": " ".join([".venv/bin/python", "experiments/efm/qipo.py", *sys.argv[1:]]) if argv is None else f"main({argv})",
        "settings": vars(args), "machine": machine_info(), "envs": {},
    }
    for env_id in args.envs:
        result["envs"][env_id] = run_env(env_id, args, lambda d: print(json.dumps(d), flush=True))
        result["wall_seconds"] = time.time() - t_start
        result["machine"]["load_avg_at_end"] = os.getloadavg()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    plot(result, out.with_suffix(".png"))
    for env_id, r in result["envs"].items():
        print(env_id, json.dumps(r["summary"]))
    print(f"wall {result['wall_seconds']:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
