"""Distributional RL: Bellman Diffusion return fields vs our C51 vs CleanRL's C51 (Bellman Diffusion sec. 5, Fig. 6).

Same loop and hyperparameters for our two agents (agm.methods.bellman.rl.train): epsilon-greedy
1 -> 0.05 over half the run, replay 10k, batch 128, learning starts 1000, one update every 4 env
steps, hard target sync every 500 steps, lr 5e-4, trunk (120, 84). CleanRL's C51 (peer, its own
venv .venv-cleanrl, /work/shared/peers.md) runs on CartPole in the same invocation with the same
values passed on its command line; it is skipped (and says so in the JSON) if its venv is missing.
CleanRL is not run on FrozenLake: its QNetwork feeds the Discrete state index as one float
(np.prod of shape ()), not a one-hot, so it would not be the same model.

Budget (the full default, sized for a loaded 2-core box): FrozenLake-v1 (4x4, slippery) 10k env
steps and CartPole-v1 10k env steps, 5 seeds each, per agent. Curves: training episodic returns
(rolling mean of 10 episodes for CartPole, 100 for FrozenLake success) interpolated on a step grid,
mean and std over seeds; FrozenLake also greedy evaluations (50 episodes every 1000 steps).
Steps-to-threshold: first env step at which the rolling training return reaches the threshold.

    python experiments/bellman/rl.py            # full run (~15 min here)
    python experiments/bellman/rl.py --quick    # smoke run (< 1 min)
Writes experiments/results/bellman_rl.json and bellman_rl_*.png.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
CLEANRL_PY = ROOT / ".venv-cleanrl" / "bin" / "python"

ENVS = {
    "FrozenLake-v1": {
        "agent_cfg": {"v_min": 0.0, "v_max": 1.0, "gamma": 0.99, "lr": 5e-4},
        "steps": 10_000, "window": 100, "threshold": 0.3, "eval_every": 1000, "eval_episodes": 50,
        "states": [0, 10, 14],
    },
    "CartPole-v1": {
        "agent_cfg": {"v_min": 0.0, "v_max": 100.0, "gamma": 0.99, "lr": 5e-4},
        "steps": 10_000, "window": 10, "threshold": 150.0, "eval_every": 0, "eval_episodes": 0,
        "states": [],
    },
}
# Bellman Diffusion only: 16 evaluation points per transition (the agent's default is 32), chosen when one update
# cost 28 ms vs 47 ms at batch 128 (C51 5 ms). Since the cost work (experiments/bellman/rl_update_cost.py) 16 and
# 32 points cost about the same; the equal-cost study is experiments/bellman/rl_study.py.
BD_EXTRA = {"n_points": 16}
LOOP = dict(buffer_size=10_000, batch_size=128, learning_starts=1_000, train_frequency=4, target_frequency=500,
            start_e=1.0, end_e=0.05, exploration_fraction=0.5)


def rolling_curve(episodes: list[tuple[int, float]], window: int, grid: np.ndarray) -> np.ndarray:
    """Rolling mean of the last ``window`` episodic returns, as a step function on ``grid`` (NaN before the first episode)."""
    out = np.full(grid.shape, np.nan)
    if not episodes:
        return out
    steps = np.array([s for s, _ in episodes])
    rets = np.array([r for _, r in episodes], dtype=float)
    cums = np.cumsum(rets)
    roll = np.array([(cums[i] - (cums[i - window] if i >= window else 0.0)) / min(i + 1, window) for i in range(len(rets))])
    idx = np.searchsorted(steps, grid, side="right") - 1
    ok = idx >= 0
    out[ok] = roll[idx[ok]]
    return out


def steps_to_threshold(episodes, window: int, threshold: float) -> int | None:
    """First env step at which the rolling mean of the last ``window`` episodic returns is >= threshold (None: never).
    For window > 1 at least ``window`` episodes must have finished (no lucky first episode)."""
    rets = []
    for s, r in episodes:
        rets.append(r)
        if len(rets) >= window and np.mean(rets[-window:]) >= threshold:
            return int(s)
    return None


def run_cleanrl(env_id: str, seed: int, steps: int, cfg: dict, loop: dict) -> dict:
    """CleanRL's C51 in its own venv with our loop's values; parse its episodic_return lines."""
    cmd = [str(CLEANRL_PY), "-m", "cleanrl.c51", "--env-id", env_id, "--seed", str(seed), "--total-timesteps", str(steps),
           "--cuda", "False", "--learning-rate", str(cfg["lr"]), "--n-atoms", "101", "--v-min", str(cfg["v_min"]),
           "--v-max", str(cfg["v_max"]), "--buffer-size", str(loop["buffer_size"]), "--gamma", str(cfg["gamma"]),
           "--target-network-frequency", str(loop["target_frequency"]), "--batch-size", str(loop["batch_size"]),
           "--learning-starts", str(loop["learning_starts"]), "--train-frequency", str(loop["train_frequency"]),
           "--start-e", str(loop["start_e"]), "--end-e", str(loop["end_e"]),
           "--exploration-fraction", str(loop["exploration_fraction"])]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"cleanrl failed (rc={proc.returncode}): {proc.stderr[-2000:]}")
    eps = [(int(m.group(1)) + 1, float(m.group(2))) for m in re.finditer(r"global_step=(\d+), episodic_return=\[?([-\d.e+]+)", proc.stdout)]
    sps = [int(x) for x in re.findall(r"SPS: (\d+)", proc.stdout)]
    return {"agent": "cleanrl_c51", "env_id": env_id, "seed": seed, "episodes": eps, "evals": [], "wall_s": time.time() - t0,
            "sps_last": sps[-1] if sps else None, "command": " ".join(cmd[1:])}


def frozenlake_mc_returns(agent, state: int, gamma: float, n: int, seed: int) -> tuple[int, np.ndarray]:
    """Greedy action at ``state`` and n Monte-Carlo discounted returns from (state, that action) under the agent's
    greedy policy (ground truth for the learned return distributions)."""
    import gymnasium as gym

    env = gym.make("FrozenLake-v1")
    nS = env.observation_space.n
    with torch.no_grad():
        q = agent.q_values(torch.eye(nS))
    pi = q.argmax(-1).numpy()
    env.reset(seed=seed)
    out = np.zeros(n)
    for i in range(n):
        env.reset()
        env.unwrapped.s = state
        a, g, disc, done = int(pi[state]), 0.0, 1.0, False
        while not done:
            s, r, term, trunc, _ = env.step(a)
            g += disc * r
            disc *= gamma
            done = term or trunc
            a = int(pi[s])
        out[i] = g
    env.close()
    return int(pi[state]), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke mode: 1 seed, 1500 steps per env (< 1 min)")
    ap.add_argument("--seeds", type=int, default=5, help="number of seeds per agent and env (default 5)")
    ap.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS), help="environments to run")
    ap.add_argument("--no-cleanrl", action="store_true", help="skip the CleanRL C51 peer")
    ap.add_argument("--reuse-c51", default=None, help="take our C51 runs of seeds > first from this earlier results JSON "
                    "(same code and seeds give the same numbers on CPU; the first seed is retrained for the distribution plots)")
    ap.add_argument("--reuse-cleanrl", default=None, help="take the CleanRL runs from this earlier results JSON instead of "
                    "rerunning them (same settings; its command is recorded)")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bellman_rl.json"), help="results JSON path")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from agm.methods.bellman.rl import LoopConfig, train_agent

    seeds = list(range(1 if args.quick else args.seeds))
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "command": " ".join([sys.executable.split("/")[-1], "experiments/bellman/rl.py", *(argv if argv is not None else sys.argv[1:])]),
        "loop": LOOP, "envs": {},
    }
    t_all = time.time()
    for env_id in args.envs:
        spec = ENVS[env_id]
        steps = 1500 if args.quick else spec["steps"]
        loop = dict(LOOP, learning_starts=500 if args.quick else LOOP["learning_starts"])
        lc = LoopConfig(total_steps=steps, eval_every=spec["eval_every"] if not args.quick else 0,
                        eval_episodes=spec["eval_episodes"] if not args.quick else 0, **loop)
        runs, agents = [], {}
        for name in ("c51", "bd"):
            for s in seeds:
                if name == "c51" and args.reuse_c51 and s != seeds[0]:
                    old = json.loads(Path(args.reuse_c51).read_text())["envs"][env_id]["runs"]
                    runs.append(next(r for r in old if r["agent"] == "c51" and r["seed"] == s))
                    print(f"{env_id} c51 seed={s} reused from {args.reuse_c51}", flush=True)
                    continue
                cfg = dict(spec["agent_cfg"], **(BD_EXTRA if name == "bd" else {}))
                agent, rec = train_agent(name, env_id, s, lc, cfg)
                rec["steps_to_threshold"] = steps_to_threshold(rec["episodes"], spec["window"], spec["threshold"])
                if name == "c51" and args.reuse_c51:
                    old = json.loads(Path(args.reuse_c51).read_text())["envs"][env_id]["runs"]
                    ref = next(r for r in old if r["agent"] == "c51" and r["seed"] == s)
                    rec["identical_to_reused_run"] = ref["episodes"] == [list(e) for e in rec["episodes"]]
                runs.append(rec)
                agents[(name, s)] = agent
                print(f"{env_id} {name} seed={s} episodes={len(rec['episodes'])} wall={rec['wall_s']:.1f}s "
                      f"to_threshold={rec['steps_to_threshold']} evals={rec['evals'][-1:]}", flush=True)
        cleanrl_note = None
        if env_id == "CartPole-v1" and args.reuse_cleanrl:
            old = json.loads(Path(args.reuse_cleanrl).read_text())
            reused = [r for r in old["envs"][env_id]["runs"] if r["agent"] == "cleanrl_c51" and r["seed"] in seeds]
            runs.extend(reused)
            cleanrl_note = f"{len(reused)} runs reused from an earlier invocation: {old['command']} (same CleanRL settings)"
        elif env_id == "CartPole-v1" and not args.no_cleanrl:
            if CLEANRL_PY.exists():
                for s in seeds:
                    try:
                        rec = run_cleanrl(env_id, s, steps, spec["agent_cfg"], loop)
                    except Exception as e:  # the peer's failure must not lose our numbers
                        cleanrl_note = f"cleanrl failed: {e}"
                        print(cleanrl_note, flush=True)
                        break
                    rec["steps_to_threshold"] = steps_to_threshold(rec["episodes"], spec["window"], spec["threshold"])
                    runs.append(rec)
                    print(f"{env_id} cleanrl_c51 seed={s} episodes={len(rec['episodes'])} wall={rec['wall_s']:.1f}s "
                          f"to_threshold={rec['steps_to_threshold']} sps={rec['sps_last']}", flush=True)
            else:
                cleanrl_note = f"skipped: {CLEANRL_PY} not found"
        elif env_id != "CartPole-v1":
            cleanrl_note = "not run: cleanrl.c51 feeds a Discrete observation as one float, not one-hot"
        # summaries
        grid = np.linspace(0, steps, 61)[1:]
        summary = {}
        for name in sorted({r["agent"] for r in runs}):
            rs = [r for r in runs if r["agent"] == name]
            curves = np.stack([rolling_curve(r["episodes"], spec["window"], grid) for r in rs])
            tt = [r["steps_to_threshold"] for r in rs]
            reached = [t for t in tt if t is not None]
            last_q = curves[:, int(0.75 * len(grid)):]
            final = np.nanmean(last_q, axis=1)
            summary[name] = {
                "seeds": len(rs),
                "curve_mean": np.nanmean(curves, 0).tolist(), "curve_std": np.nanstd(curves, 0).tolist(),
                "final_quarter_mean_per_seed": final.tolist(),
                "final_quarter_mean": float(np.mean(final)), "final_quarter_std_over_seeds": float(np.std(final)),
                "steps_to_threshold": tt, "reached": f"{len(reached)}/{len(rs)}",
                "steps_to_threshold_median_reached": float(np.median(reached)) if reached else None,
                "final_greedy_eval_mean": float(np.mean([r["evals"][-1][1] for r in rs])) if rs[0]["evals"] else None,
                "wall_s_mean": float(np.mean([r["wall_s"] for r in rs])),
            }
        env_res = {"steps": steps, "agent_cfg": spec["agent_cfg"], "window": spec["window"], "threshold": spec["threshold"],
                   "grid": grid.tolist(), "summary": summary, "cleanrl": cleanrl_note,
                   "runs": [{k: v for k, v in r.items() if k not in ("loop",)} for r in runs]}
        # return distributions for chosen states (seed 0 agents)
        if env_id == "FrozenLake-v1":
            dists = {}
            for st in spec["states"]:
                dists[str(st)] = {}
                for name in ("c51", "bd"):
                    agent = agents[(name, seeds[0])]
                    a, mc = frozenlake_mc_returns(agent, st, spec["agent_cfg"]["gamma"], 300 if args.quick else 2000, 123)
                    obs = torch.eye(16)[st]
                    zg, dens = agent.return_density(obs, a)
                    zg, dens = zg.numpy(), dens.numpy()
                    dz = zg[1] - zg[0]
                    mean_model = float((np.clip(dens, 0, None) * zg).sum() / max(np.clip(dens, 0, None).sum(), 1e-12))
                    dists[str(st)][name] = {"action": a, "z": zg.tolist(), "density": dens.tolist(),
                                            "model_mean": mean_model, "mc_mean": float(mc.mean()),
                                            "mc_p_zero": float((mc == 0).mean()), "mc_returns_hist": np.histogram(mc, bins=20, range=(0, 1))[0].tolist(),
                                            "mass": float(np.clip(dens, 0, None).sum() * dz)}
            env_res["return_distributions"] = dists
        else:
            dists = {}
            import gymnasium as gym
            e = gym.make(env_id)
            o0, _ = e.reset(seed=0)
            e.close()
            obs = torch.as_tensor(o0, dtype=torch.float32)
            for name in ("c51", "bd"):
                agent = agents[(name, seeds[0])]
                a = agent.act(obs)
                zg, dens = agent.return_density(obs, a)
                dists[name] = {"action": a, "obs": o0.tolist(), "z": zg.numpy().tolist(), "density": dens.numpy().tolist()}
            env_res["return_distributions"] = {"initial_state_seed0": dists}
        results["envs"][env_id] = env_res
        plot(env_id, env_res, out_path.parent / f"{out_path.stem}_{env_id.split('-')[0].lower()}.png")
    results["wall_s"] = time.time() - t_all
    from agm.training.results import write_result

    write_result(out_path, results)
    print(f"wrote {out_path} in {results['wall_s']:.0f}s")
    return 0


def plot(env_id: str, res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dists = res["return_distributions"]
    ncol = 1 + len(dists)
    fig, axes = plt.subplots(1, ncol, figsize=(5 * ncol, 3.8))
    ax = axes[0]
    grid = np.array(res["grid"])
    for name, s in res["summary"].items():
        m, sd = np.array(s["curve_mean"]), np.array(s["curve_std"])
        ax.plot(grid, m, label=f"{name} (n={s['seeds']})")
        ax.fill_between(grid, m - sd, m + sd, alpha=0.2)
    ax.axhline(res["threshold"], color="k", ls=":", lw=0.8)
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"training return (rolling {res['window']} episodes)")
    ax.set_title(env_id)
    ax.legend(fontsize=8)
    for ax, (st, d) in zip(axes[1:], dists.items()):
        for name, v in d.items() if isinstance(d, dict) and "c51" in d else []:
            ax.plot(v["z"], v["density"], label=f"{name} (a={v['action']})")
            if "mc_returns_hist" in v:
                h = np.array(v["mc_returns_hist"], float)
                edges = np.linspace(0, 1, 21)
                w = edges[1] - edges[0]
                ax.bar(edges[:-1], h / h.sum() / w, width=w, align="edge", alpha=0.15, label=f"MC returns under {name}'s policy")
        ax.set_title(f"return density, state {st}")
        ax.set_xlabel("return z")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
