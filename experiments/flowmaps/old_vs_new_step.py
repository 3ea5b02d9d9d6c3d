"""Is the shared Trainer the same computation as the private loop it replaced (commit dc082c1)?

Trains G-LSD on the vMF mixture on S^2 for 1 and for 2 steps in both codes (same seed, lr 2e-3, EMA off) and
compares the weights. After 1 step the only possible difference is the loop itself (the old cosine schedule's
factor is 1 at the first step); after 2 steps of a 2-step run the old schedule's factor is 0.5, the Trainer's 1.

    git worktree add /tmp/old-flowmaps dc082c1
    python experiments/flowmaps/old_vs_new_step.py --old /tmp/old-flowmaps

Writes experiments/results/flowmaps_old_vs_new_step.json.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import torch

OLD = """
import sys, torch
torch.set_num_threads(1)
from agm.data.manifold import make_manifold_data
from agm.manifolds.training import FlowMapTrainConfig, train_flow_map
m, x = make_manifold_data("sphere_vmf", 2000, seed=0)
fm = train_flow_map(m, x, FlowMapTrainConfig(method="lagrangian", iters=int(sys.argv[1]), hidden=32, lr=2e-3, ema=0.0, seed=3)).flow_map
torch.save(fm.state_dict(), sys.argv[2])
"""


def new_weights(steps: int) -> dict:
    from agm.data.manifold import make_manifold_data
    from agm.methods.flowmaps import load_config, train_flow_map

    m, x = make_manifold_data("sphere_vmf", 2000, seed=0)
    cfg = load_config(None, ["method=lagrangian", f"train.steps={steps}", "model.hidden=32", "train.lr=2e-3", "train.ema_decay=0",
                             "seed=3", "train.progress=false", "train.device=cpu", "train.tensorboard=false"])
    return train_flow_map(m, x, cfg).flow_map.state_dict()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--old", required=True, help="a git worktree of commit dc082c1")
    p.add_argument("--out", default="experiments/results/flowmaps_old_vs_new_step.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from agm.training.results import write_result

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for steps in (1, 2):
            path = os.path.join(tmp, f"old_{steps}.pt")
            env = dict(os.environ, PYTHONPATH=os.path.join(args.old, "src"))
            subprocess.run([sys.executable, "-c", OLD, str(steps), path], check=True, env=env, cwd=args.old)
            old, new = torch.load(path), new_weights(steps)
            assert list(old) == list(new)
            rows[f"steps_{steps}"] = {"max_abs_weight_difference": max(float((old[k] - new[k]).abs().max()) for k in old)}
            print(steps, rows[f"steps_{steps}"], flush=True)
    write_result(args.out, {"command": "python experiments/flowmaps/old_vs_new_step.py --old " + args.old, "old_commit": "dc082c1",
                            "setting": "G-LSD, sphere_vmf (2000 points), hidden 32, lr 2e-3, EMA off, seed 3", "results": rows})
    print("wrote", args.out)


if __name__ == "__main__":
    main()
