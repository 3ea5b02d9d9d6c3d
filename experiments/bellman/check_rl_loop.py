"""Check that the RL loop with checkpoints draws the same random numbers as the loop of commit dc082c1.

    python experiments/bellman/check_rl_loop.py /tmp/rl_new.json
    git worktree add /tmp/old-bellman dc082c1
    PYTHONPATH=/tmp/old-bellman/src python experiments/bellman/check_rl_loop.py /tmp/rl_old.json
    # then compare the two files: the episode records and final losses must be equal
"""
import json, sys, torch
torch.set_num_threads(1)
try:
    from agm.methods.bellman.rl import LoopConfig, train_agent
except ImportError:
    from agm.rl.distributional.train import LoopConfig, train_agent
out = {}
for agent in ("bd", "c51"):
    lc = LoopConfig(total_steps=1500, learning_starts=200, batch_size=32, buffer_size=1000, target_frequency=100)
    _, rec = train_agent(agent, "CartPole-v1", 0, lc, {"v_min": 0.0, "v_max": 100.0, "n_points": 8} if agent == "bd" else {"v_min": 0.0, "v_max": 100.0})
    out[agent] = {"episodes": [list(e) for e in rec["episodes"]], "final_loss": rec["final_loss"]}
json.dump(out, open(sys.argv[1], "w"))
