"""Bellman Diffusion vs C51 (ours) vs CleanRL-style C51 at equal environment steps and at equal training time,
on CartPole-v1, FrozenLake-v1 (4x4, slippery) and Acrobot-v1 (docs/bellman.md, "Distributional RL at equal cost").

Agents (one loop for all: agm.methods.bellman.rl.train, epsilon 1 -> 0.05 over half the run, replay 10k,
batch 128, learning starts 1000, one update every 4 env steps, hard target sync every 500 steps, lr 5e-4,
trunk (120, 84), gamma 0.99):
  bd            Bellman Diffusion, 101-point grid, 32 shared evaluation points, grid-read target fields
  c51           our C51, 101 atoms, Adam eps 0.01/batch (CleanRL's value; the former 0.01/32 is c51_eps_old)
  c51_cleanrl   our C51 with CleanRL's loss (log of the pmf clamped to [1e-5, 1 - 1e-5]) and Adam eps 0.01/batch
  c51_eps_old   our C51 with the former Adam eps 0.01/32 (CartPole only: the "report both" of the eps fix)
The real CleanRL (cleanrl 1.2.0, its own venv) is not run here: its venv is not installed on this box; the
earlier 5-seed CartPole run of it is in experiments/results/bellman_rl_v1_terminal_bug.json.

Equal steps: every run has the same env-step budget. Equal time: each run records its training CPU time
(process time, 1 thread, greedy evaluations excluded) at every episode end; T_eq is the median total
training time of the cheapest agent on that env, and every agent is read at T_eq (its rolling training
return over the episodes finished by then, and the env steps it had reached). CPU time, not wall time, is
the axis because the 2-core box is shared (wall time is also recorded).

Every finished run is appended to a JSONL file (resumable: runs already there are skipped), and the summary
JSON is rebuilt from it at the end.

    nice -n 10 .venv/bin/python experiments/bellman/rl_study.py                       # full: 10 seeds x 3 envs
    nice -n 10 .venv/bin/python experiments/bellman/rl_study.py --seeds 3 --envs CartPole-v1   # a part
Writes experiments/results/bellman_rl_study.json (+ bellman_rl_study_runs.jsonl).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from rl import rolling_curve, steps_to_threshold  # noqa: E402

ENVS = {
    "CartPole-v1": {"range": (0.0, 100.0), "steps": 10_000, "window": 10, "threshold": 150.0, "eval_every": 10_000, "eval_episodes": 10},
    "FrozenLake-v1": {"range": (0.0, 1.0), "steps": 10_000, "window": 100, "threshold": 0.3, "eval_every": 2_000, "eval_episodes": 50},
    "Acrobot-v1": {"range": (-100.0, 0.0), "steps": 10_000, "window": 10, "threshold": -150.0, "eval_every": 10_000, "eval_episodes": 10},
}
AGENTS = {
    "bd": ("bd", {"n_points": 32}),
    "c51": ("c51", {}),
    "c51_cleanrl": ("c51", {"loss": "clamped_log"}),
    "c51_eps_old": ("c51", {"adam_eps": 0.01 / 32}),
}
ENV_AGENTS = {"CartPole-v1": ["bd", "c51", "c51_cleanrl", "c51_eps_old"], "FrozenLake-v1": ["bd", "c51", "c51_cleanrl"],
              "Acrobot-v1": ["bd", "c51", "c51_cleanrl"]}
LOOP = dict(buffer_size=10_000, batch_size=128, learning_starts=1_000, train_frequency=4, target_frequency=500,
            start_e=1.0, end_e=0.05, exploration_fraction=0.5)


def rolling_at(episodes, times, window: int, t: float) -> tuple[float | None, int]:
    """Mean of the last ``window`` episodic returns finished by training time t, and the env step reached by then."""
    done = [(s, r) for (s, r), (c, _) in zip(episodes, times) if c <= t]
    if not done:
        return None, 0
    rets = [r for _, r in done[-window:]]
    return float(np.mean(rets)), int(done[-1][0])


def summarise(runs: list[dict], env_id: str) -> dict:
    spec = ENVS[env_id]
    steps = spec["steps"]
    grid = np.linspace(0, steps, 41)[1:]
    agents = [a for a in ENV_AGENTS[env_id] if any(r["label"] == a for r in runs)]
    # paired comparison: only seeds that every agent of this env has finished
    seeds = sorted(set.intersection(*({r["seed"] for r in runs if r["label"] == a} for a in agents)))
    partial = sorted({(r["label"], r["seed"]) for r in runs if r["seed"] not in seeds})
    by = {a: sorted([r for r in runs if r["label"] == a and r["seed"] in seeds], key=lambda r: r["seed"]) for a in agents}
    cost = {a: float(np.median([r["train_cpu_s"] for r in rs])) for a, rs in by.items()}
    t_eq = min(cost.values())
    out = {"steps": steps, "window": spec["window"], "threshold": spec["threshold"], "grid": grid.tolist(),
           "seeds": seeds, "left_out_unpaired_runs": [list(p) for p in partial], "equal_time_cpu_s": t_eq, "agents": {}}
    for a, rs in by.items():
        curves = np.stack([rolling_curve(r["episodes"], spec["window"], grid) for r in rs])
        final_q = np.nanmean(curves[:, int(0.75 * len(grid)):], axis=1)
        tt = [steps_to_threshold(r["episodes"], spec["window"], spec["threshold"]) for r in rs]
        reached = [t for t in tt if t is not None]
        at_t = [rolling_at(r["episodes"], r["episode_times"], spec["window"], t_eq) for r in rs]
        eq_ret = [v for v, _ in at_t if v is not None]
        evals_final = [r["evals"][-1][1] for r in rs if r["evals"]]
        # greedy evaluation at equal time: the last evaluation whose training time is <= T_eq
        eq_eval = []
        for r in rs:
            ok = [ev for ev, (c, _) in zip(r["evals"], r["eval_times"]) if c <= t_eq]
            eq_eval.append(ok[-1][1] if ok else None)
        n = len(rs)
        sd = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else None  # noqa: E731
        out["agents"][a] = {
            "seeds": n, "seed_list": [r["seed"] for r in rs],
            "train_cpu_s_median": cost[a], "train_wall_s_median": float(np.median([r["train_wall_s"] for r in rs])),
            "equal_steps": {
                "last_quarter_mean": float(np.mean(final_q)), "last_quarter_sd": sd(final_q), "per_seed": final_q.tolist(),
                "final_greedy_eval_mean": float(np.mean(evals_final)) if evals_final else None,
                "final_greedy_eval_sd": sd(evals_final) if evals_final else None,
                "steps_to_threshold": tt, "reached": f"{len(reached)}/{n}",
                "steps_to_threshold_median_reached": float(np.median(reached)) if reached else None,
            },
            "equal_time": {
                "rolling_return_mean": float(np.mean(eq_ret)) if eq_ret else None, "rolling_return_sd": sd(eq_ret),
                "per_seed": [v for v, _ in at_t], "env_steps_reached_mean": float(np.mean([s for _, s in at_t])),
                "greedy_eval_mean": float(np.mean([e for e in eq_eval if e is not None])) if any(e is not None for e in eq_eval) else None,
            },
            "curve_mean": np.nanmean(curves, 0).tolist(), "curve_sd": np.nanstd(curves, 0).tolist(),
        }
    from agm.training.results import seed_summary

    out["paired_differences"] = {}
    for a in agents:
        if a == "c51" or "c51" not in by or len(seeds) < 2:
            continue
        d = {}
        for key in ("equal_steps", "equal_time"):
            field_ = "per_seed"
            x, y = out["agents"][a][key][field_], out["agents"]["c51"][key][field_]
            if None not in x and None not in y:
                d[key] = seed_summary(x, paired_with=y)
        out["paired_differences"][f"{a}_minus_c51"] = d
    t_grid = np.linspace(0, max(cost.values()), 41)[1:]
    out["time_grid_cpu_s"] = t_grid.tolist()
    for a, rs in by.items():
        tc = np.array([[np.nan if (t > r["train_cpu_s"] or (v := rolling_at(r["episodes"], r["episode_times"], spec["window"], t)[0]) is None)
                        else v for t in t_grid] for r in rs])  # NaN after a run's end
        with np.errstate(all="ignore"):
            out["agents"][a]["time_curve_mean"] = [None if np.isnan(v) else float(v) for v in np.nanmean(tc, 0)]
    return out


def plot(env_id: str, res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for a, v in res["agents"].items():
        m, sd = np.array(v["curve_mean"]), np.array(v["curve_sd"])
        axes[0].plot(res["grid"], m, label=f"{a} (n={v['seeds']})")
        axes[0].fill_between(res["grid"], m - sd, m + sd, alpha=0.15)
        axes[1].plot(res["time_grid_cpu_s"], v["time_curve_mean"], label=a)
    axes[1].axvline(res["equal_time_cpu_s"], color="k", ls=":", lw=0.8)
    axes[0].set_xlabel("env steps")
    axes[1].set_xlabel("training CPU s (1 thread)")
    for ax in axes:
        ax.set_ylabel(f"training return (rolling {res['window']} episodes)")
        ax.legend(fontsize=7)
    axes[0].set_title(f"{env_id}: equal steps")
    axes[1].set_title(f"{env_id}: equal time (dotted: T_eq)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    ap.add_argument("--agents", nargs="+", default=None, choices=list(AGENTS), help="default: each env's list")
    ap.add_argument("--steps", type=int, default=None, help="override every env's step budget")
    ap.add_argument("--quick", action="store_true", help="1 seed, 1500 steps, learning starts 500")
    ap.add_argument("--reverse", action="store_true", help="seeds in descending order (a second process on the same study)")
    ap.add_argument("--summary-only", action="store_true", help="rebuild the JSON from the JSONL")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bellman_rl_study.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from agm.methods.bellman.rl import LoopConfig, train_agent

    out = Path(args.out)
    runs_path = out.with_name(out.stem + "_runs.jsonl")
    loop = dict(LOOP, learning_starts=500 if args.quick else LOOP["learning_starts"])
    seeds = list(range(args.first_seed, args.first_seed + (1 if args.quick else args.seeds)))

    def finished() -> set:
        """Runs already in the JSONL (read before every run, so that two processes, one with --reverse, can share a study)."""
        if not runs_path.exists():
            return set()
        return {(r["env_id"], r["label"], r["seed"], r["loop"]["total_steps"]) for r in map(json.loads, runs_path.read_text().splitlines())}

    if not args.summary_only:
        for seed in (seeds[::-1] if args.reverse else seeds):  # seeds outermost and agents interleaved: the machine's load falls on all agents alike
            for env_id in args.envs:
                spec = ENVS[env_id]
                steps = 1500 if args.quick else (args.steps or spec["steps"])
                for label in args.agents or ENV_AGENTS[env_id]:
                    if label not in ENV_AGENTS[env_id] or (env_id, label, seed, steps) in finished():
                        continue
                    kind, extra = AGENTS[label]
                    cfg = {"v_min": spec["range"][0], "v_max": spec["range"][1], "gamma": 0.99, "lr": 5e-4, **extra}
                    lc = LoopConfig(total_steps=steps, eval_every=min(spec["eval_every"], steps), eval_episodes=spec["eval_episodes"], **loop)
                    _, rec = train_agent(kind, env_id, seed, lc, cfg)
                    rec["label"] = label
                    rec["episode_times"] = [[round(c, 3), round(w, 3)] for c, w in rec["episode_times"]]
                    rec["eval_times"] = [[round(c, 3), round(w, 3)] for c, w in rec["eval_times"]]
                    rec["episodes"] = [[s_, round(r_, 4)] for s_, r_ in rec["episodes"]]
                    with runs_path.open("a") as f:
                        f.write(json.dumps(rec) + "\n")
                    print(f"{env_id} {label} seed={seed} episodes={len(rec['episodes'])} cpu={rec['train_cpu_s']:.1f}s "
                          f"wall={rec['train_wall_s']:.1f}s last10={np.mean([r for _, r in rec['episodes'][-10:]]):.3g} "
                          f"eval={rec['evals'][-1:]}", flush=True)
    all_runs, seen = [], set()
    for line in runs_path.read_text().splitlines() if runs_path.exists() else []:
        r = json.loads(line)
        key = (r["env_id"], r["label"], r["seed"], r["loop"]["total_steps"])
        if key not in seen:  # two processes may both have run a seed: keep the first record
            seen.add(key)
            all_runs.append(r)
    results = {"command": " ".join(["python", "experiments/bellman/rl_study.py", *(argv if argv is not None else sys.argv[1:])]),
               "loop": LOOP, "agents": {k: {"kind": v[0], "cfg": v[1]} for k, v in AGENTS.items()}, "gamma": 0.99, "lr": 5e-4,
               "runs_file": str(runs_path.relative_to(ROOT)) if runs_path.is_relative_to(ROOT) else str(runs_path), "envs": {}}
    for env_id in ENVS:
        rs = [r for r in all_runs if r["env_id"] == env_id]
        if rs:
            results["envs"][env_id] = {"value_range": ENVS[env_id]["range"], **summarise(rs, env_id)}
            plot(env_id, results["envs"][env_id], out.with_name(f"{out.stem}_{env_id.split('-')[0].lower()}.png"))
            print(env_id, json.dumps({a: {"eq_steps": v["equal_steps"]["last_quarter_mean"], "eval": v["equal_steps"]["final_greedy_eval_mean"],
                                          "eq_time": v["equal_time"]["rolling_return_mean"], "cpu": v["train_cpu_s_median"], "n": v["seeds"]}
                                      for a, v in results["envs"][env_id]["agents"].items()}), flush=True)
    from agm.training.results import write_result

    write_result(out, results)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
