"""Cost of one Bellman Diffusion update relative to one C51 update, before and after the cost work (docs/bellman.md).

Same batch (128 CartPole-shaped transitions: 4-dim observations, 2 actions, 5% terminal), same trunk (120, 84),
101 atoms / grid points, one torch thread. "before" is the code of commit d19f6a4 (a git worktree given by
--old-src; skipped if absent), "after" is this checkout. The two run in alternating worker processes, ROUNDS
times each, so that the load of the shared machine hits both alike; each worker times every configuration
in turn (process CPU time and wall time per update, median over the rounds' medians). Acting (one greedy
action for one observation) is timed the same way.

    git worktree add /tmp/old-bellman-rl d19f6a4
    nice -n 10 .venv/bin/python experiments/bellman/rl_update_cost.py --old-src /tmp/old-bellman-rl/src
Writes experiments/results/bellman_rl_update_cost.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

NEW_CONFIGS = {
    "c51": ("c51", {}),
    "c51_clamped_log": ("c51", {"loss": "clamped_log"}),
    "bd_m16": ("bd", {"n_points": 16}),
    "bd_m32": ("bd", {"n_points": 32}),
    "bd_m64": ("bd", {"n_points": 64}),
    "bd_m16_exact_target": ("bd", {"n_points": 16, "target_eval": "exact"}),
    "bd_m16_per_transition_points": ("bd", {"n_points": 16, "shared_points": False}),
    "bd_m16_former_update": ("bd", {"n_points": 16, "shared_points": False, "target_eval": "exact"}),
    "bd_m32_former_update": ("bd", {"n_points": 32, "shared_points": False, "target_eval": "exact"}),
}
OLD_CONFIGS = {"c51": ("c51", {}), "bd_m16": ("bd", {"n_points": 16}), "bd_m32": ("bd", {"n_points": 32})}


def worker(which: str, n_updates: int, n_acts: int) -> dict:
    """Time every configuration of ``which`` ('old' or 'new') once; returns {name: {update_cpu_ms, ...}}."""
    import torch

    torch.set_num_threads(1)
    from agm.methods.bellman.rl import BDConfig, BellmanDiffusionAgent, C51Agent, C51Config

    g = torch.Generator().manual_seed(0)
    B, D, A = 128, 4, 2
    batch = {"obs": torch.randn(B, D, generator=g), "next_obs": torch.randn(B, D, generator=g),
             "actions": torch.randint(0, A, (B,), generator=g), "rewards": torch.ones(B),
             "terminated": (torch.rand(B, generator=g) < 0.05).float()}
    out = {}
    for name, (kind, extra) in (OLD_CONFIGS if which == "old" else NEW_CONFIGS).items():
        torch.manual_seed(0)
        common = {"v_min": 0.0, "v_max": 100.0}
        agent = C51Agent(D, A, C51Config(**common, **extra)) if kind == "c51" else BellmanDiffusionAgent(D, A, BDConfig(**common, **extra))
        for _ in range(10):
            agent.update(batch)
        c, w = time.process_time(), time.perf_counter()
        for _ in range(n_updates):
            agent.update(batch)
        uc, uw = (time.process_time() - c) / n_updates, (time.perf_counter() - w) / n_updates
        o = batch["obs"][0]
        c, w = time.process_time(), time.perf_counter()
        for _ in range(n_acts):
            agent.act(o)
        ac, aw = (time.process_time() - c) / n_acts, (time.perf_counter() - w) / n_acts
        out[name] = {"update_cpu_ms": 1e3 * uc, "update_wall_ms": 1e3 * uw, "act_cpu_ms": 1e3 * ac, "act_wall_ms": 1e3 * aw}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old-src", default="/tmp/old-bellman-rl/src", help="src/ of a worktree at commit d19f6a4 ('' to skip)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--updates", type=int, default=100, help="timed updates per configuration and round")
    ap.add_argument("--acts", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="2 rounds of 20 updates")
    ap.add_argument("--worker", choices=["old", "new"], help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "experiments" / "results" / "bellman_rl_update_cost.json"))
    args = ap.parse_args(argv)
    if args.quick:
        args.rounds, args.updates, args.acts = 2, 20, 50
    if args.worker:
        print(json.dumps(worker(args.worker, args.updates, args.acts)))
        return 0
    sides = {"new": str(ROOT / "src")}
    if args.old_src and Path(args.old_src).is_dir():
        sides["old"] = args.old_src
    rounds: dict[str, list[dict]] = {k: [] for k in sides}
    for i in range(args.rounds):
        for which, src in sides.items():
            env = dict(os.environ, PYTHONPATH=src, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
            cmd = [sys.executable, __file__, "--worker", which, "--updates", str(args.updates), "--acts", str(args.acts)]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            rounds[which].append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"round {i} {which}: " + ", ".join(f"{k} {v['update_cpu_ms']:.2f}" for k, v in rounds[which][-1].items()), flush=True)
    summary: dict = {}
    for which, rs in rounds.items():
        summary[which] = {}
        for name in rs[0]:
            summary[which][name] = {m: statistics.median(r[name][m] for r in rs) for m in rs[0][name]}
    ratios: dict = {}
    for which in summary:
        c51 = summary[which]["c51"]
        ratios[which] = {name: {"update_cpu": v["update_cpu_ms"] / c51["update_cpu_ms"], "update_wall": v["update_wall_ms"] / c51["update_wall_ms"],
                                "act_cpu": v["act_cpu_ms"] / c51["act_cpu_ms"]} for name, v in summary[which].items()}
    cmd = " ".join(["python", "experiments/bellman/rl_update_cost.py", *(argv if argv is not None else sys.argv[1:])])
    record = {"command": cmd, "batch": 128, "obs_dim": 4, "n_actions": 2, "hidden": [120, 84], "grid_or_atoms": 101,
              "rounds": args.rounds, "updates_per_round": args.updates, "acts_per_round": args.acts,
              "old_commit": "d19f6a4" if "old" in sides else None, "median_ms": summary, "ratio_to_c51_same_code": ratios,
              "per_round": rounds, "note": "medians over rounds of per-update process CPU time (and wall time), 1 torch thread"}
    from agm.training.results import write_result

    write_result(args.out, record)
    print(json.dumps(ratios, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
