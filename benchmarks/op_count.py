"""ATen operations per training step of every AGM arm (issue 17/21: on a launch-bound GPU step the overhead of an
arm is its extra operations, whatever their FLOPs). Counts the operations the dispatcher runs in one Trainer step
(forward, backward, clipping, optimizer, EMA) on the CPU, after 3 warm-up steps, with weights active, on a step
that is not a log step (as inside fit()).
Deterministic, so it runs on any machine; the GPU runs the same operations (the fused optimizer is one per group).

    PYTHONPATH=src python benchmarks/op_count.py --config toy --out benchmarks/results/op_count_toy.json
    PYTHONPATH=src python benchmarks/op_count.py --config images_digits_gpu --set train.amp=none \
        --set train.channels_last=false --set train.batch_size=8 --out benchmarks/results/op_count_digits.json
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def count_ops(fn, calls: int = 1) -> dict[str, int]:
    """ATen operations the dispatcher runs in ``calls`` calls of ``fn()`` (below autograd: forward, backward and
    optimizer operations alike, each counted once, with nothing nested counted twice), by operator name.

    The one operation counter of ``benchmarks/`` (``train_step.py --profile`` uses it too)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    names: dict[str, int] = {}

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            names[str(func)] = names.get(str(func), 0) + 1
            return func(*args, **(kwargs or {}))

    with Count():
        for _ in range(calls):
            fn()
    return names


def count_step(trainer) -> dict[str, int]:
    """ATen operations of one ``trainer.train_step()`` (:func:`count_ops`)."""
    return count_ops(trainer.train_step)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="toy")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--arms", nargs="+", default=["baseline", "time_weight", "fixed_weight", "agm", "agm_path"])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))  # run as a script: this tree's library (not on import: train_step.py)
    import torch

    from agm.methods.agm.config import load_config
    from agm.methods.agm.run import RECIPE
    from agm.training.results import write_result
    from agm.training.trainer import Trainer

    torch.set_num_threads(1)
    per_arm, extra = {}, {}
    for arm in args.arms:
        cfg = load_config(args.config, [f"method={arm}", "potential.warmup_steps=0", "train.progress=false",
                                        "train.device=cpu", *args.overrides])
        data = RECIPE.load_data(cfg)
        torch.manual_seed(cfg.seed)
        tr = Trainer(RECIPE.build(cfg, data.meta), data.train, dataclasses.replace(cfg.train, device="cpu"), seed=cfg.seed)
        tr._fit_total = 10**9  # as inside fit(): the counted step is not a log step, so no statistics are computed
        for _ in range(3):
            tr.train_step()
        per_arm[arm] = count_step(tr)
    base = per_arm.get("baseline", {})
    n_base = sum(base.values())
    for arm, names in per_arm.items():
        diff = {k: v - base.get(k, 0) for k, v in names.items() if v != base.get(k, 0)}
        extra[arm] = dict(sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:25])
    total = {arm: sum(v.values()) for arm, v in per_arm.items()}
    result = {"command": "python " + " ".join(sys.argv), "config": args.config, "overrides": args.overrides,
              "ops_per_step": total, "ratio_to_drift_only": {a: n / n_base for a, n in total.items()} if n_base else None,
              "extra_ops_vs_drift_only": extra}
    write_result(args.out, result)
    for arm, n in total.items():
        print(f"{arm:<14} {n:6d} ops/step" + (f"  ratio {n / n_base:.3f}" if n_base else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
