"""QIPO (flow policy) vs behaviour cloning (same flow policy, beta = 0) vs the behaviour data's own return.

arXiv 2503.04975 (Zhang et al., ICLR 2025), section 5 / Algorithm 2; our notation and choices in docs/efm_qipo.md.

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

Settings: the defaults of agm.methods.efm.config.QIPOConfig (the one set of QIPO defaults, the same as
``agm qipo train``; since session 7 the tuned "v2" setting, before it "v1": docs/efm_qipo.md says which result
JSONs ran v1 and the ``--set`` keys that reproduce them), changed only by ``--set key=value`` (e.g. --set behaviour_steps=1500). Per env and seed, one
Trainer run (agm.methods.efm.qipo): (1) behaviour warm-up, plain CFM for K1 steps -> pi_0; (2) in-support softmax
Q-learning for K2 steps, support actions from pi_0; then, from the same state (networks, optimiser, generator)
for every beta: (3a) QIPO improvement for K3 steps with the support renewed every K_renew steps; (3b) BC: the same
pi_0 trained K3 more steps with plain CFM (beta = 0). Curves: evaluation every ``eval_every`` phase-3 steps;
final: ``final_episodes`` fresh episodes. Best-of-N by Q is reported separately (not part of the method).

    .venv/bin/python experiments/efm/qipo.py            # full run (experiments/results/qipo.json)
    .venv/bin/python experiments/efm/qipo.py --quick    # smoke run (< 1 min), writes /tmp/qipo_quick.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from agm.training.results import machine_info, write_result

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MIXTURES = {
    "Pendulum-v1": None,  # equal shares of the four behaviours
    "InvertedPendulum-v5": {"expert_low_noise": 0.01, "expert_high_noise": 0.33, "epsilon_expert": 0.33, "random": 0.33},
}


def run_env(env_id: str, args, log) -> dict:
    import gymnasium as gym

    from agm.data.offline import check_env_compatible
    from agm.methods.efm import QIPO, QIPOConfig, evaluate_policy, generate_dataset, load_npz, make_trainer, normalized_score
    from agm.training.config import build_config

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
    base = build_config(QIPOConfig, None, [*args.set, "train.progress=false", f"beta={args.betas[0]}"])
    k1, k2, total = base.phase_ends

    def score(returns):
        return float(np.mean(normalized_score(np.asarray(returns), ref_r, ref_e)))

    per_seed = []
    for seed in args.seeds:
        t0 = time.time()
        cfg = build_config(QIPOConfig, None, [*args.set, "train.progress=false", f"beta={args.betas[0]}", f"seed={seed}"])
        algo = QIPO(data, cfg, low, high)
        trainer = make_trainer(algo)
        trainer.fit(k1)
        ev_seed, fin_seed = 10_000 + 100 * seed, 50_000 + 100 * seed
        pi0 = score(evaluate_policy(algo.act, env_id, args.eval_episodes, ev_seed))
        q_recs = [r["q_loss"] for r in trainer.fit(k2) if "q_loss" in r]
        rec = {"seed": seed, "pi0_score": pi0, "q_loss_last_logged": q_recs[-1] if q_recs else None}
        snap = trainer.snapshot()  # phase 3 from the same pi_0, Q, optimiser and generator for every beta and for BC

        def phase3(beta: float) -> tuple[list, list]:
            trainer.restore(snap)
            algo.cfg.beta = beta  # beta = 0: phase 3 is behaviour cloning (plain CFM on the data)
            algo.gen.manual_seed(seed + 1)
            curve, logs = [(0, pi0)], []
            for k in range(k2 + args.eval_every, total + 1, args.eval_every):
                logs += [r for r in trainer.fit(k) if "per_state_ess" in r]
                curve.append((k - k2, score(evaluate_policy(algo.act, env_id, args.eval_episodes, ev_seed))))
            trainer.fit(total)
            return curve, logs

        for beta in args.betas:
            curve, logs = phase3(beta)
            final = evaluate_policy(algo.act, env_id, args.final_episodes, fin_seed)
            best = evaluate_policy(lambda o: algo.act(o, best_of=args.best_of), env_id, args.final_episodes, fin_seed)
            rec[f"qipo_b{beta:g}"] = {"final_score": score(final), "final_return": float(np.mean(final)),
                                       "best_of_n_score": score(best), "curve": curve, "log": logs}
        curve_bc, _ = phase3(0.0)
        final_bc = evaluate_policy(algo.act, env_id, args.final_episodes, fin_seed)
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
        "qipo_config": asdict(base),
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
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="QIPOConfig overrides (default: none, i.e. the defaults of agm qipo train)")
    p.add_argument("--eval-every", type=int, default=500, help="evaluation period in phase 3 (learning curves)")
    p.add_argument("--eval-episodes", type=int, default=10, help="episodes per curve point")
    p.add_argument("--final-episodes", type=int, default=20, help="episodes of the final evaluation")
    p.add_argument("--best-of", type=int, default=8, help="N of the separately reported best-of-N action selection")
    p.add_argument("--out", default=None, help="output JSON (default experiments/results/qipo.json; /tmp/qipo_quick.json with --quick)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.envs, args.seeds, args.n_transitions = ["Pendulum-v1"], [0], 3000
        args.set = ["behaviour_steps=100", "q_steps=100", "improve_steps=100", "renew_every=50", "support_states=512", *args.set]
        args.eval_every = 50
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
        write_result(out, result)
    plot(result, out.with_suffix(".png"))
    for env_id, r in result["envs"].items():
        print(env_id, json.dumps(r["summary"]))
    print(f"wall {result['wall_seconds']:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
