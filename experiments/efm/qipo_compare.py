"""QIPO vs IQL vs TD3+BC on the same offline data, same networks, same gradient-step budget; and QIPO's tuning sweep.

arXiv 2503.04975 (QIPO, section 5 / Algorithm 2), arXiv 2110.06169 (IQL), arXiv 2106.06860 (TD3+BC);
our settings and the results table: docs/efm_qipo.md.

Data sets (generated once, shared by every seed and method):
  * pendulum-mixed: Pendulum-v1, agm's built-in per-episode mixture of a scripted expert with low / high noise,
    epsilon-expert and uniform random (agm.methods.efm.behaviour), 30,000 transitions, data seed 0;
  * invpend-mixed: InvertedPendulum-v5 (MuJoCo), the same mixture with episode shares 0.01 / 0.33 / 0.33 / 0.33
    (about half the transitions come from 1000-step expert episodes, half from short failures), 30,000 transitions;
  * hopper-medium-replay: Hopper-v5, the replay buffer of an online TD3 run trained here
    (experiments/efm/qipo_data.py), D4RL's reference returns for the normalised score.
Methods: QIPO (agm.methods.efm.qipo, one Trainer run: K1 behaviour, K2 Q, K3 improvement steps), IQL and TD3+BC
(agm.methods.efm.baselines, K1 + K2 + K3 steps of the one Trainer). Widths: --hidden x --depth for every network.
Score: D4RL-normalised return 100 (R - R_random) / (R_expert - R_random) of --episodes fresh episodes per seed;
mean and Student-t 95% interval over seeds (agm.training.results.seed_summary).

Tuning (--tune): per seed, QIPO's phases 1-2 are trained once; then every phase-3 variant (beta, beta schedule,
renewal period) restarts from that same state, and each trained policy is evaluated with every act-time sampler
(Euler / Heun steps). Use tuning seeds disjoint from the reporting seeds.

--diagnose records, per QIPO job, the learned Q of the data's actions after phase 2, E_pi[Q] of every trained variant
and its best-of-8-by-Q score; --knn-bc K scores a k-nearest-neighbour behaviour clone of the data (a reference for
what cloning can reach). QIPO runs QIPOConfig's defaults (since session 7 the issue-19 "v2" setting of docs/efm_qipo.md;
the v2 JSONs made before passed it with --set, the v1 ones ran the old defaults) changed by --set.

    .venv/bin/python experiments/efm/qipo_compare.py --quick                       # smoke (< 2 min)
    python experiments/efm/qipo_compare.py --datasets pendulum-mixed invpend-mixed --methods iql td3bc \\
        --seeds 0 1 2 3 4 --workers 15 --out experiments/results/qipo_compare_baselines.json
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
INVPEND_MIXTURE = {"expert_low_noise": 0.01, "expert_high_noise": 0.33, "epsilon_expert": 0.33, "random": 0.33}
DATASETS = {"pendulum-mixed": "Pendulum-v1", "invpend-mixed": "InvertedPendulum-v5", "hopper-medium-replay": "Hopper-v5",
            "pendulum-medium-replay": "Pendulum-v1"}
# phase-3 variants of the tuning sweep (QIPOConfig keys)
TUNE_VARIANTS = [
    {"beta": 3.0}, {"beta": 10.0}, {"beta": 30.0},
    {"beta": 30.0, "beta_schedule": "linear"},
    {"beta": 10.0, "renew_every": "k3/20"},
]
TUNE_SAMPLERS = [(5, "euler"), (20, "euler"), (10, "heun")]


def dataset_path(name: str, args) -> Path:
    """Build (once) and return the .npz of a named data set."""
    from agm.methods.efm import generate_dataset

    if name == "hopper-medium-replay":
        return Path(args.hopper_data)
    if name == "pendulum-medium-replay":
        return Path(args.pendulum_data)
    n = args.n_transitions
    path = Path(args.data_dir) / f"{name}_{n}_seed{args.data_seed}.npz"
    if not path.exists():
        mixture = INVPEND_MIXTURE if name == "invpend-mixed" else None
        generate_dataset(DATASETS[name], n, mixture=mixture, seed=args.data_seed).save_npz(path)
    return path


def _load(spec):
    import gymnasium as gym

    from agm.data.offline import check_env_compatible, load_npz

    data = load_npz(spec["data_path"])
    env = gym.make(spec["env"])
    check_env_compatible(data, env)
    low, high = env.action_space.low.tolist(), env.action_space.high.tolist()
    env.close()
    return data, low, high


def _score(data, returns):
    from agm.methods.efm import normalized_score

    return float(np.mean(normalized_score(np.asarray(returns), data.meta["ref_random_return"], data.meta["ref_expert_return"])))


def knn_bc_score(data, env_id: str, k: int, episodes: int, seed: int) -> float:
    """A non-parametric behaviour-cloning reference: at each step, the action of one of the k nearest data states
    (standardised observations), drawn uniformly; it estimates what cloning the data's per-state action law can reach."""
    from agm.methods.efm.evaluate import evaluate_policy

    obs = data.observations.float()
    m, s = obs.mean(0), obs.std(0).clamp_min(1e-3)
    on, acts = (obs - m) / s, data.actions.float()
    g = torch.Generator().manual_seed(seed)

    def act(o):
        d = torch.cdist((torch.as_tensor(o, dtype=torch.float32) - m) / s, on)
        nn_idx = d.topk(k, largest=False).indices
        return acts[nn_idx[torch.arange(len(o)), torch.randint(0, k, (len(o),), generator=g)]].numpy()

    return _score(data, evaluate_policy(act, env_id, episodes, seed=seed))


def run_job(spec: dict) -> dict:
    """One (data set, method, seed): train, evaluate; QIPO jobs evaluate every phase-3 variant x act-time sampler."""
    torch.set_num_threads(1)
    from agm.methods.efm.evaluate import evaluate_policy

    t0 = time.time()
    data, low, high = _load(spec)
    seed, env_id, eps = spec["seed"], spec["env"], spec["episodes"]
    fin_seed = 50_000 + 1000 * seed
    out = {k: spec[k] for k in ("dataset", "method", "seed")}
    if spec["method"] in ("iql", "td3bc"):
        from agm.methods.efm.baselines import BaselineConfig, make_baseline, make_baseline_trainer

        algo = make_baseline(spec["method"], data, BaselineConfig(hidden=spec["hidden"], depth=spec["depth"]), low, high, seed=seed)
        make_baseline_trainer(algo, steps=spec["steps"], lr=spec.get("baseline_lr", 3e-4),
                              tau=spec.get("baseline_tau", 0.005)).fit()
        rets = evaluate_policy(algo.act, env_id, eps, seed=fin_seed)
        out.update(score=_score(data, rets), return_mean=float(np.mean(rets)), seconds=time.time() - t0)
        return out
    from agm.methods.efm import QIPO, QIPOConfig, make_trainer
    from agm.samplers import ODESampler
    from agm.training.config import build_config

    cfg = build_config(QIPOConfig, None, [*spec["qipo_set"], "train.progress=false", f"seed={seed}",
                                          f"policy_hidden={spec['hidden']}", f"q_hidden={spec['hidden']}",
                                          f"policy_depth={spec['depth']}", f"q_depth={spec['depth']}"])
    algo = QIPO(data, cfg, low, high)
    trainer = make_trainer(algo)
    k2 = cfg.phase_ends[1]
    trainer.fit(k2)
    snap = trainer.snapshot()
    diag_idx = None
    if spec.get("diagnose"):  # fixed data states: the learned Q of the data's own actions after phase 2 (its scale)
        diag_idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(3))[:2000]
        with torch.no_grad():
            out["q_data_actions_mean"] = float(algo.q_value(data.observations[diag_idx], algo.actions[diag_idx][:, None]).mean())
    out["variants"] = []
    for var in spec["variants"]:
        trainer.restore(snap)
        v = dict(var)
        if isinstance(v.get("renew_every"), str):  # "k3/N": N renewals
            v["renew_every"] = max(1, cfg.improve_steps // int(v["renew_every"].split("/")[1]))
        for key in ("beta", "beta_schedule", "renew_every"):
            setattr(algo.cfg, key, v.get(key, getattr(cfg, key)))
        algo.cfg.validate()
        algo.gen.manual_seed(seed + 1)
        logs = [r for r in trainer.fit(algo.cfg.phase_ends[2]) if "per_state_ess" in r]
        rec = {"variant": v, "per_state_ess_last": logs[-1]["per_state_ess"] if logs else None, "samplers": []}
        for steps, method in spec["samplers"]:
            algo.act_sampler = ODESampler(steps, method)
            algo.gen.manual_seed(seed + 2)
            rets = evaluate_policy(algo.act, env_id, eps, seed=fin_seed)
            rec["samplers"].append({"steps": steps, "method": method, "score": _score(data, rets), "return_mean": float(np.mean(rets))})
        if diag_idx is not None:  # E_pi[Q] of the trained policy (8 samples per state) and best-of-8 by the same Q
            obs = data.observations[diag_idx]
            with torch.no_grad():
                a = algo.policy.sample(obs, 8, generator=torch.Generator().manual_seed(0))
                rec["q_policy_mean"] = float(algo.q_value(obs, a).mean())
            algo.gen.manual_seed(seed + 2)
            rets = evaluate_policy(lambda o: algo.act(o, best_of=8), env_id, eps, seed=fin_seed)
            rec["best_of_8_score"] = _score(data, rets)
        out["variants"].append(rec)
    out["seconds"] = time.time() - t0
    return out


def job_key(spec: dict) -> str:
    """A job's name in a sweep: data set, method, seed."""
    return f"{spec['dataset']}/{spec['method']}/seed{spec['seed']}"


def summarise(jobs: list[dict], data_scores: dict) -> dict:
    """Per data set: seed summaries (mean, sd, 95% CI) of each method / QIPO variant x sampler."""
    from agm.training.results import seed_summary

    table: dict = {}
    for ds in sorted({j["dataset"] for j in jobs}):
        rows: dict[str, list] = {}
        for j in sorted((j for j in jobs if j["dataset"] == ds), key=lambda j: j["seed"]):
            if "score" in j:
                rows.setdefault(j["method"], []).append(j["score"])
                continue
            for v in j["variants"]:
                vname = "qipo " + " ".join(f"{k}={val}" for k, val in v["variant"].items())
                for s in v["samplers"]:
                    rows.setdefault(vname + f" act={s['steps']}{s['method']}", []).append(s["score"])
                if "best_of_8_score" in v:
                    rows.setdefault(vname + " best-of-8 by Q", []).append(v["best_of_8_score"])
        table[ds] = {"behaviour_data_score": data_scores.get(ds), **{k: seed_summary(v) for k, v in rows.items()}}
    return table


def main(argv: list[str] | None = None) -> int:
    from agm.training.results import machine_info, write_result

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--methods", nargs="+", default=["qipo", "iql", "td3bc"], choices=["qipo", "iql", "td3bc"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--tune", action="store_true", help="QIPO: every phase-3 variant x act-time sampler of the sweep")
    p.add_argument("--k1", type=int, default=4000, help="QIPO behaviour steps")
    p.add_argument("--k2", type=int, default=4000, help="QIPO Q steps")
    p.add_argument("--k3", type=int, default=4000, help="QIPO improvement steps (baselines: k1 + k2 + k3 steps)")
    p.add_argument("--hidden", type=int, default=256, help="width of every network (QIPO's and the baselines')")
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="QIPOConfig overrides (the QIPO variant reported)")
    p.add_argument("--act-steps", type=int, default=None, help="QIPO act-time sampler steps (default: QIPOConfig's)")
    p.add_argument("--act-method", default=None, help="QIPO act-time sampler method (default: QIPOConfig's)")
    p.add_argument("--episodes", type=int, default=20, help="evaluation episodes per seed")
    p.add_argument("--n-transitions", type=int, default=30_000)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--data-dir", default="/tmp/qipo_compare_data")
    p.add_argument("--hopper-data", default="/tmp/qipo_data/Hopper-v5_medium_replay.npz")
    p.add_argument("--pendulum-data", default="/tmp/qipo_data/Pendulum-v1_medium_replay.npz",
                   help="Pendulum-v1 medium-replay .npz (experiments/efm/qipo_data.py --env Pendulum-v1)")
    p.add_argument("--variants", default=None, help="QIPO phase-3 variants as JSON (a list of QIPOConfig key dicts)")
    p.add_argument("--samplers", default=None, help="QIPO act-time samplers as JSON, e.g. [[5, \"euler\"], [10, \"heun\"]]")
    p.add_argument("--diagnose", action="store_true",
                   help="QIPO: also record the learned Q of the data's actions (after phase 2), of the trained policy's "
                        "actions (E_pi Q), and the best-of-8-by-Q score of every variant (with the last act-time sampler)")
    p.add_argument("--knn-bc", type=int, nargs="*", default=[], metavar="K",
                   help="also score the k-nearest-neighbour behaviour-cloning reference (knn_bc_score) for each K")
    p.add_argument("--baseline-lr", type=float, default=3e-4, help="IQL / TD3+BC: Adam learning rate of every network")
    p.add_argument("--baseline-tau", type=float, default=0.005, help="IQL / TD3+BC: Polyak rate of the target networks")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="smoke mode: tiny budgets, Pendulum, 1 seed")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.datasets, args.seeds, args.n_transitions, args.episodes = ["pendulum-mixed"], [0], 3000, 2
        args.k1 = args.k2 = args.k3 = 60
        args.hidden = 32
        args.set = ["renew_every=30", "support_states=256", *args.set]
    out = Path(args.out or ("/tmp/qipo_compare_quick.json" if args.quick else ROOT / "experiments/results/qipo_compare.json"))
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)
    from agm.data.offline import load_npz
    from agm.methods.efm import QIPOConfig, normalized_score
    from agm.training.config import build_config

    qipo_set = [f"behaviour_steps={args.k1}", f"q_steps={args.k2}", f"improve_steps={args.k3}", *args.set]
    base = build_config(QIPOConfig, None, qipo_set)
    variants = TUNE_VARIANTS if args.tune else json.loads(args.variants) if args.variants else [{}]
    samplers = TUNE_SAMPLERS if args.tune else [tuple(x) for x in json.loads(args.samplers)] if args.samplers else \
        [(args.act_steps or base.eval_sampler_steps or base.sampler_steps, args.act_method or base.eval_sampler_method or base.sampler_method)]
    data_scores, paths, specs = {}, {}, []
    for ds in args.datasets:
        paths[ds] = dataset_path(ds, args)
        d = load_npz(paths[ds])
        data_scores[ds] = float(np.mean(normalized_score(d.episode_returns(), d.meta["ref_random_return"], d.meta["ref_expert_return"])))
        for method in args.methods:
            for seed in args.seeds:
                specs.append({"dataset": ds, "env": DATASETS[ds], "data_path": str(paths[ds]), "method": method, "seed": seed,
                              "steps": args.k1 + args.k2 + args.k3, "hidden": args.hidden, "depth": args.depth,
                              "qipo_set": qipo_set, "variants": variants, "samplers": samplers, "episodes": args.episodes,
                              "diagnose": args.diagnose, "baseline_lr": args.baseline_lr, "baseline_tau": args.baseline_tau})
    specs.sort(key=lambda s: (s["dataset"] != "hopper-medium-replay", s["method"] != "qipo"))  # longest first
    result = {"command": shlex.join(["python", "experiments/efm/qipo_compare.py", *(sys.argv[1:] if argv is None else argv)]),
              "settings": vars(args), "qipo_config": base.to_dict(), "machine": machine_info(), "jobs": []}
    t0 = time.time()
    if args.knn_bc:
        result["knn_bc"] = {ds: {str(k): knn_bc_score(load_npz(paths[ds]), DATASETS[ds], k, args.episodes, 50_000) for k in args.knn_bc}
                            for ds in args.datasets}
        print("knn-bc", json.dumps(result["knn_bc"]), flush=True)

    def record(job):
        result["jobs"].append(job)
        result["summary"] = summarise(result["jobs"], data_scores)
        result["wall_seconds"] = time.time() - t0
        result["machine"]["load_avg_at_end"] = os.getloadavg()
        write_result(out, result)
        print(json.dumps({k: job.get(k) for k in ("dataset", "method", "seed", "score", "seconds")}), flush=True)

    from agm.training.sweep import run_sweep

    run_sweep(specs, run_job, key=job_key, workers=args.workers, on_record=lambda spec, job: record(job))
    for ds, rows in result["summary"].items():
        print(ds, "data", f"{rows['behaviour_data_score']:.1f}")
        for k, v in rows.items():
            if isinstance(v, dict):
                print(f"  {k:60s} {v['mean']:7.1f}  [{v['ci95'][0]:.1f}, {v['ci95'][1]:.1f}]")
    print(f"wall {time.time() - t0:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
