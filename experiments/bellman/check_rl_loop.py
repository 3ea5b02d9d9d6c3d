"""Check that the RL loop draws the same random numbers as the loop of an older commit (dc082c1 or d19f6a4).

    python experiments/bellman/check_rl_loop.py /tmp/rl_new.json
    git worktree add /tmp/old-bellman d19f6a4
    PYTHONPATH=/tmp/old-bellman/src python experiments/bellman/check_rl_loop.py /tmp/rl_old.json
    # then compare the two files: the episode records and final losses must be equal

The agents run with the former settings (C51: Adam eps 0.01/32; BD: per-transition points, exact target
evaluation), which the older code ignores. C51 is then the same computation, so its records must be equal; the
BD update of d19f6a4 and the former-update options compute the same fields with a different summation order
(the factored (B, H) x (H, M) product), so BD's losses may differ in the last float digits. Measured against
d19f6a4 (2026-12-03): C51 identical; BD identical episodes, final loss 2.19546755 vs 2.19546754.
"""
import json, sys, torch
torch.set_num_threads(1)
try:
    from agm.methods.bellman.rl import LoopConfig, train_agent
except ImportError:
    from agm.rl.distributional.train import LoopConfig, train_agent
from dataclasses import fields
try:
    from agm.methods.bellman.rl import BDConfig, C51Config
    new_bd = {f.name for f in fields(BDConfig)}
    new_c51 = {f.name for f in fields(C51Config)}
except ImportError:
    new_bd = new_c51 = set()
out = {}
for agent in ("bd", "c51"):
    lc = LoopConfig(total_steps=1500, learning_starts=200, batch_size=32, buffer_size=1000, target_frequency=100)
    cfg = {"v_min": 0.0, "v_max": 100.0, "n_points": 8} if agent == "bd" else {"v_min": 0.0, "v_max": 100.0}
    if agent == "bd" and "target_eval" in new_bd:
        cfg.update(shared_points=False, target_eval="exact")
    if agent == "c51" and "adam_eps" in new_c51:
        cfg.update(adam_eps=0.01 / 32)
    _, rec = train_agent(agent, "CartPole-v1", 0, lc, cfg)
    out[agent] = {"episodes": [list(e) for e in rec["episodes"]], "final_loss": rec["final_loss"]}
json.dump(out, open(sys.argv[1], "w"))
