"""Fixed-policy evaluation against exact dynamic programming: Bellman Diffusion vs C51 (docs/bellman.md).

Two tabular Markov reward processes (an MDP with its policy applied), each with an exact return law per state
from agm.methods.bellman.rl.dp.exact_return_distribution:
  - chain: 5 states, policy "right"; from state s w.p. 0.6 one step right (from state 4: the goal, r = +1,
    terminal), w.p. 0.3 stay, w.p. 0.1 fall into a hole (r = -1, terminal); gamma 0.9. Returns +-gamma^t:
    a two-signed, multi-atom law.
  - frozenlake: FrozenLake-v1 4x4 slippery (gymnasium's transition table) under the greedy policy of value
    iteration at gamma 0.9 (time limit ignored); returns gamma^t (goal) or 0 (hole).
Both agents see one-hot states and a single action (the policy is part of the process), so a* is trivial and
the update is pure distributional policy evaluation. Each update draws a batch of 128 transitions: states
uniform over the non-terminal states, outcomes from the process. Same Adam learning rate, same trunk (120, 84),
hard target sync every 50 updates, N updates. C51: 101 atoms on [v_min, v_max]. BD: 101-point grid, 32
evaluation points, sigma_T 0.05 (normalised units).

Metric: W1 between the learned return law of each non-terminal state and the exact one (BD: max(f, 0)
normalised on its grid; C51: its pmf), mean over states. Floors: the W1 of the best law each model can
express: C51, the exact law projected onto its atoms; BD, the exact fixed point of the field equations with
the Gaussian terminal kernel (Z + gamma^t xi, xi ~ N(0, eps_T), dp.exact_return_distribution(with_discounts)).

    nice -n 10 .venv/bin/python experiments/bellman/rl_policy_eval.py
Writes experiments/results/bellman_rl_policy_eval.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


def chain_mrp():
    out = []
    for s in range(5):
        right = (0.6, 1.0, -1) if s == 4 else (0.6, 0.0, s + 1)
        out.append([right, (0.3, 0.0, s), (0.1, -1.0, -1)])
    return out


def frozenlake_mrp(gamma: float):
    import gymnasium as gym

    from agm.methods.bellman.rl.dp import mrp_from_gym

    env = gym.make("FrozenLake-v1")
    P = env.unwrapped.P
    env.close()
    nS, nA = len(P), 4
    desc = "SFFFFHFHFFFHHFFG"
    terminal = [i for i, c in enumerate(desc) if c in "HG"]
    V = np.zeros(nS)
    for _ in range(2000):  # value iteration (terminal states have value 0)
        Q = np.array([[sum(p * (r + (0 if d else gamma * V[s2])) for p, s2, r, d in P[s][a]) for a in range(nA)] for s in range(nS)])
        V = np.where(np.isin(np.arange(nS), terminal), 0.0, Q.max(1))
    policy = Q.argmax(1)
    mrp = mrp_from_gym(P, policy, terminal)
    return mrp, [s for s in range(nS) if s not in terminal], policy.tolist()


TASKS = {
    "chain": {"gamma": 0.9, "v_min": -1.0, "v_max": 1.0},
    "frozenlake": {"gamma": 0.9, "v_min": 0.0, "v_max": 1.0},
}


def build_task(name: str):
    spec = TASKS[name]
    if name == "chain":
        return chain_mrp(), list(range(5)), None
    return frozenlake_mrp(spec["gamma"])


def sample_batch(mrp, states, n_states, B, rng):
    s = rng.choice(states, size=B)
    obs, nobs = np.zeros((B, n_states), np.float32), np.zeros((B, n_states), np.float32)
    r, term = np.zeros(B, np.float32), np.zeros(B, np.float32)
    for i, si in enumerate(s):
        outs = mrp[si]
        j = rng.choice(len(outs), p=[o[0] for o in outs])
        _, ri, s2 = outs[j]
        obs[i, si] = 1.0
        r[i] = ri
        if s2 < 0:
            term[i] = 1.0
        else:
            nobs[i, s2] = 1.0
    return {"obs": torch.from_numpy(obs), "next_obs": torch.from_numpy(nobs), "actions": torch.zeros(B, dtype=torch.long),
            "rewards": torch.from_numpy(r), "terminated": torch.from_numpy(term)}


def learned_cdfs(agent, kind: str, n_states: int, states, x):
    from agm.methods.bellman.rl.dp import cdf_of_atoms, cdf_of_density

    eye = torch.eye(n_states)
    out, masses = {}, {}
    with torch.no_grad():
        for s in states:
            if kind == "c51":
                pmf = agent.pmf(eye[s][None])[0, 0].numpy()
                out[s] = cdf_of_atoms(agent.support.numpy(), pmf, x)
            else:
                zg, dens = agent.return_density(eye[s], 0)
                out[s], masses[s] = cdf_of_density(zg.numpy(), dens.numpy(), x)
    return out, masses


def run_one(task: str, kind: str, seed: int, n_updates: int, extra: dict, exact: dict, x, lr: float, sync_every: int):
    from agm.methods.bellman.rl import BDConfig, BellmanDiffusionAgent, C51Agent, C51Config
    from agm.methods.bellman.rl.dp import w1_from_cdfs

    spec = TASKS[task]
    mrp, states, _ = build_task(task)
    n = len(mrp)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    common = {"v_min": spec["v_min"], "v_max": spec["v_max"], "gamma": spec["gamma"], "lr": lr}
    agent = C51Agent(n, 1, C51Config(**common, **extra), batch_size=128) if kind == "c51" else \
        BellmanDiffusionAgent(n, 1, BDConfig(**common, n_points=32, **extra))
    c0 = time.process_time()
    curve = []
    for u in range(n_updates):
        agent.update(sample_batch(mrp, states, n, 128, rng))
        if (u + 1) % sync_every == 0:
            agent.sync_target()
        if (u + 1) % max(n_updates // 5, 1) == 0:
            cdfs, _ = learned_cdfs(agent, kind, n, states, x)
            curve.append((u + 1, float(np.mean([w1_from_cdfs(cdfs[s], exact[s], x) for s in states]))))
    cpu = time.process_time() - c0
    cdfs, masses = learned_cdfs(agent, kind, n, states, x)
    w1 = {str(s): w1_from_cdfs(cdfs[s], exact[s], x) for s in states}
    return {"task": task, "agent": kind, "extra": extra, "seed": seed, "w1_per_state": w1, "w1_mean": float(np.mean(list(w1.values()))),
            "w1_curve": curve, "bd_mass_per_state": {str(k): v for k, v in masses.items()}, "cpu_s": cpu}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--updates", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--sync-every", type=int, default=50)
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--variant-seeds", type=int, default=2, help="seeds for the BD variants (exact target evaluation)")
    ap.add_argument("--quick", action="store_true", help="1 seed, 300 updates")
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bellman_rl_policy_eval.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.seeds, args.updates, args.variant_seeds = 1, 300, 1
    from agm.methods.bellman.rl.dp import cdf_of_atoms, cdf_of_density, exact_return_distribution, w1_from_cdfs

    agents = [("c51", {}, args.seeds), ("bd", {}, args.seeds), ("bd", {"target_eval": "exact"}, args.variant_seeds)]
    results = {"command": " ".join(["python", "experiments/bellman/rl_policy_eval.py", *(argv if argv is not None else sys.argv[1:])]),
               "updates": args.updates, "batch": 128, "lr": args.lr, "sync_every": args.sync_every, "tasks": {}}
    for task in args.tasks:
        spec = TASKS[task]
        mrp, states, policy = build_task(task)
        kappa = 0.5 * (spec["v_max"] - spec["v_min"])
        x = np.linspace(spec["v_min"] - 0.3 * kappa, spec["v_max"] + 0.3 * kappa, 20001)
        exact, exact_laws, floors = {}, {}, {"c51": {}, "bd": {}}
        support = np.linspace(spec["v_min"], spec["v_max"], 101)
        bd_grid = 0.5 * (spec["v_max"] + spec["v_min"]) + kappa * np.linspace(-1.1, 1.1, 101)
        sig = 0.05 * kappa
        for s in states:
            atoms, probs, disc, residual = exact_return_distribution(mrp, spec["gamma"], s, tol=1e-12, with_discounts=True)
            exact[s] = cdf_of_atoms(atoms, probs, x)
            a2, p2, _ = exact_return_distribution(mrp, spec["gamma"], s, tol=1e-12)
            exact_laws[str(s)] = {"atoms": a2[p2 > 1e-6].tolist(), "probs": p2[p2 > 1e-6].tolist(), "mean": float(a2 @ p2), "residual": residual}
            # C51 floor: linear split of each atom onto its two neighbouring support points
            b = (np.clip(atoms, spec["v_min"], spec["v_max"]) - spec["v_min"]) / (support[1] - support[0])
            lo = np.floor(b).astype(int).clip(0, 100)
            hi = np.ceil(b).astype(int).clip(0, 100)
            m = np.zeros(101)
            np.add.at(m, lo, probs * (hi - b + (lo == hi)))
            np.add.at(m, hi, probs * (b - lo))
            floors["c51"][str(s)] = w1_from_cdfs(cdf_of_atoms(support, m, x), exact[s], x)
            # BD floor: the exact fixed point with the Gaussian terminal kernel, on BD's grid
            sd = np.maximum(disc * sig, 1e-9)
            dens = (probs[:, None] * np.exp(-0.5 * ((bd_grid[None] - atoms[:, None]) / sd[:, None]) ** 2) / (np.sqrt(2 * np.pi) * sd[:, None])).sum(0)
            F, _ = cdf_of_density(bd_grid, dens, x)
            floors["bd"][str(s)] = w1_from_cdfs(F, exact[s], x)
        runs = []
        for kind, extra, n_seeds in agents:
            for seed in range(n_seeds):
                rec = run_one(task, kind, seed, args.updates, extra, exact, x, args.lr, args.sync_every)
                runs.append(rec)
                print(f"{task} {kind} {extra} seed={seed} W1={rec['w1_mean']:.4f} curve={[round(c[1], 4) for c in rec['w1_curve']]} cpu={rec['cpu_s']:.1f}s", flush=True)
        summary = {}
        for kind, extra, _ in agents:
            label = kind + "".join(f"_{k}={v}" for k, v in extra.items())
            ws = [r["w1_mean"] for r in runs if r["agent"] == kind and r["extra"] == extra]
            summary[label] = {"seeds": len(ws), "w1_mean": float(np.mean(ws)), "w1_sd": float(np.std(ws, ddof=1)) if len(ws) > 1 else None,
                              "w1_per_seed": ws, "cpu_s_mean": float(np.mean([r["cpu_s"] for r in runs if r["agent"] == kind and r["extra"] == extra]))}
        summary["floor_c51_projection"] = float(np.mean(list(floors["c51"].values())))
        summary["floor_bd_kernel_fixed_point"] = float(np.mean(list(floors["bd"].values())))
        results["tasks"][task] = {**spec, "states": states, "policy": policy, "exact": exact_laws, "floors": floors, "summary": summary, "runs": runs}
        print(task, {k: (v if not isinstance(v, dict) else {kk: vv for kk, vv in v.items() if kk != "w1_per_seed"}) for k, v in summary.items()}, flush=True)
    from agm.training.results import write_result

    write_result(args.out, results)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
