"""Training-step time of every arm of docs/agm.md against drift-only, in one run (issue 17's overhead goal).

Builds each arm (baseline, agm, time_weight, fixed_weight, agm_path) from one config, trains each through the
one Trainer (no run folder) for --warmup steps, then times --steps steps per arm in --rounds interleaved rounds
(CUDA-synchronised), and reports the median step time and its ratio to drift-only. Weights are active
(potential.warmup_steps=0) so the timed steps include the weighting.

    python experiments/agm/step_time.py --config images_digits_gpu --out experiments/results/agm_step_time_gpu.json
    python experiments/agm/step_time.py --config toy --set train.device=cpu --out /tmp/agm_step_time_cpu.json
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

ARMS = ["baseline", "agm", "time_weight", "fixed_weight", "agm_path"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="images_digits_gpu")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--arms", nargs="+", default=ARMS)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import torch

    from agm.methods.agm.config import load_config
    from agm.methods.agm.run import RECIPE
    import dataclasses

    from agm.training.devices import resolve_device
    from agm.training.results import write_result
    from agm.training.trainer import Trainer

    trainers = {}
    for arm in args.arms:
        cfg = load_config(args.config, [f"method={arm}", "potential.warmup_steps=0", "train.progress=false", *args.overrides])
        data = RECIPE.load_data(cfg)
        device = resolve_device(cfg.train.device)
        torch.manual_seed(cfg.seed)  # the same initial drift for every arm
        method = RECIPE.build(cfg, data.meta).to(device)
        tr = Trainer(method, data.train, dataclasses.replace(cfg.train, device=str(device)), seed=cfg.seed)
        tr._fit_total = 10**9  # as inside fit(): timed steps are not log steps (no per-step statistics)
        for _ in range(args.warmup):
            tr.train_step()
        trainers[arm] = tr
    cuda = next(iter(trainers.values())).device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times: dict[str, list[float]] = {arm: [] for arm in args.arms}
    for _ in range(args.rounds):
        for arm, tr in trainers.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                tr.train_step()
            sync()
            times[arm].append((time.perf_counter() - t0) / args.steps)
    med = {arm: statistics.median(v) for arm, v in times.items()}
    base = med.get("baseline")
    result = {
        "command": "python " + " ".join(sys.argv),
        "config": args.config, "overrides": args.overrides, "steps_per_round": args.steps, "rounds": args.rounds,
        "warmup": args.warmup, "device": str(next(iter(trainers.values())).device),
        "median_step_seconds": med, "step_seconds": times,
        "ratio_to_drift_only": {arm: (m / base if base else None) for arm, m in med.items()},
    }
    write_result(args.out, result)
    for arm in args.arms:
        r = result["ratio_to_drift_only"][arm]
        print(f"{arm:<14} {med[arm] * 1e3:8.3f} ms/step   ratio {r:.3f}" if r else f"{arm:<14} {med[arm] * 1e3:8.3f} ms/step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
