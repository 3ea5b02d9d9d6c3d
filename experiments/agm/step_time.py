"""Training-step time of every arm of docs/agm.md against drift-only, in one run (issue 17's overhead goal).

Builds each arm (baseline, agm, time_weight, fixed_weight, agm_path) from one config, trains each through the
one Trainer (no run folder) for --warmup steps, then times --steps steps per arm in --rounds interleaved rounds
(CUDA-synchronised), and reports the median step time and its ratio to drift-only. Weights are active
(potential.warmup_steps=0) so the timed steps include the weighting.

With ``--compile-scopes modules loss`` every arm is built once per train.compile_scope (train.compile=true implied;
named ``arm@scope``) and all of them are timed in the same interleaved rounds; each ratio is against drift-only of
the same scope (``baseline@scope``), and ``ratio_between_scopes`` gives each arm's step time with the second scope
over the first. The third warm-up step is a log step (the Trainer's statistics), so that a compiled loss
(compile_scope=loss) compiles its log-step variant before the timed rounds, not inside one.

    python experiments/agm/step_time.py --config images_digits_gpu --out experiments/results/agm_step_time_gpu.json
    python experiments/agm/step_time.py --config toy --set train.device=cpu --out /tmp/agm_step_time_cpu.json
    python experiments/agm/step_time.py --config images_digits_gpu --arms baseline agm --compile-scopes modules loss \
        --set train.batch_size=128 --out experiments/results/agm_step_time_gpu_compile_scope_b128.json
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
    ap.add_argument("--compile-scopes", nargs="+", choices=["modules", "loss"], default=None,
                    help="time every arm once per train.compile_scope (train.compile=true implied), in the same rounds")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    import torch

    from agm.methods.agm.config import load_config
    from agm.methods.agm.run import RECIPE
    import dataclasses

    from agm.training.devices import resolve_device
    from agm.training.results import write_result
    from agm.training.trainer import Trainer

    scopes = args.compile_scopes or [None]
    trainers = {}
    for scope in scopes:
        extra = [] if scope is None else ["train.compile=true", f"train.compile_scope={scope}"]
        for arm in args.arms:
            cfg = load_config(args.config, [f"method={arm}", "potential.warmup_steps=0", "train.progress=false",
                                            *args.overrides, *extra])
            data = RECIPE.load_data(cfg)
            device = resolve_device(cfg.train.device)
            torch.manual_seed(cfg.seed)  # the same initial drift for every arm
            method = RECIPE.build(cfg, data.meta).to(device)
            tr = Trainer(method, data.train, dataclasses.replace(cfg.train, device=str(device)), seed=cfg.seed)
            for i in range(args.warmup):
                # as inside fit(), steps are log steps (per-step statistics) only every train.log_every steps; the third
                # warm-up step is one, so that a compiled loss compiles its log-step variant here, not in a timed round
                tr._fit_total = tr.step + 1 if i == 2 else 10**9
                tr.train_step()
            tr._fit_total = 10**9
            trainers[arm if scope is None else f"{arm}@{scope}"] = tr
    cuda = next(iter(trainers.values())).device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in trainers}
    from torch._dynamo.utils import counters

    graphs_before = counters["stats"]["unique_graphs"]
    for _ in range(args.rounds):
        for name, tr in trainers.items():
            sync()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                tr.train_step()
            sync()
            times[name].append((time.perf_counter() - t0) / args.steps)
    graphs_in_rounds = counters["stats"]["unique_graphs"] - graphs_before  # TorchDynamo graphs compiled while timing
    med = {name: statistics.median(v) for name, v in times.items()}

    def base_of(name: str) -> float | None:
        return med.get("baseline" + (name[name.index("@"):] if "@" in name else ""))

    result = {
        "command": "python " + " ".join(sys.argv),
        "config": args.config, "overrides": args.overrides, "compile_scopes": args.compile_scopes,
        "steps_per_round": args.steps, "rounds": args.rounds,
        "warmup": args.warmup, "device": str(next(iter(trainers.values())).device),
        "graphs_compiled_in_timed_rounds": graphs_in_rounds,
        "median_step_seconds": med, "step_seconds": times,
        "ratio_to_drift_only": {name: (m / base_of(name) if base_of(name) else None) for name, m in med.items()},
    }
    if args.compile_scopes and len(args.compile_scopes) == 2:
        a, b = args.compile_scopes
        result["ratio_between_scopes"] = {f"{arm}: {b} / {a}": med[f"{arm}@{b}"] / med[f"{arm}@{a}"] for arm in args.arms}
    write_result(args.out, result)
    for name in trainers:
        r = result["ratio_to_drift_only"][name]
        print(f"{name:<22} {med[name] * 1e3:8.3f} ms/step   ratio {r:.3f}" if r else f"{name:<22} {med[name] * 1e3:8.3f} ms/step")
    for k, v in result.get("ratio_between_scopes", {}).items():
        print(f"{k:<22} {v:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
