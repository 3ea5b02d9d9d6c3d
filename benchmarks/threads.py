"""CPU threads for small models: the toy training step (TimeMLP hidden 256, depth 3, batch 256, AdamW) at 1 and 2
intra-op threads, on an idle core pair and with the other core kept busy by a spinning process.

Each setting runs in a fresh process (torch's thread pool is fixed per process); the steps are timed in
interleaved rounds (1 thread, 2 threads, 1 thread, ...) and the median step time is reported. The result
chose ``train.threads=0`` (auto): one thread for models under agm.training.devices.SMALL_MODEL_PARAMS on the
CPU (docs/runs.md).

    python benchmarks/threads.py [--rounds 3 --steps 150]
Writes benchmarks/results/threads_<host>.json (machine included; the machine's load average is recorded).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import sys, time, torch
threads, steps = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
from agm.methods.agm.config import load_config
from agm.methods.agm.run import RECIPE
from agm.training import Trainer
cfg = load_config("toy", ["method=baseline", "train.progress=false", "train.tensorboard=false", "data.n_train=4096"])
data = RECIPE.load_data(cfg)
torch.manual_seed(0)
method = RECIPE.build(cfg, data.meta)
tr = Trainer(method, data.train, cfg.train, seed=0)
tr.fit(10)  # warm-up
t0 = time.perf_counter()
tr.fit(10 + steps)
print((time.perf_counter() - t0) / steps)
"""


def _spin(stop) -> None:
    x = 0
    while not stop.is_set():
        x += 1


def _time(threads: int, steps: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads), str(steps)], capture_output=True, text=True, env=env, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    from agm.training.results import write_result

    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / f"threads_{platform.node() or 'host'}.json"))
    args = ap.parse_args()
    load_before = os.getloadavg()
    results = {}
    for busy in (False, True):
        stop, spinner = None, None
        if busy:
            stop = mp.Event()
            spinner = mp.Process(target=_spin, args=(stop,), daemon=True)
            spinner.start()
        try:
            times = {1: [], 2: []}
            for _ in range(args.rounds):
                for t in (1, 2):
                    times[t].append(_time(t, args.steps))
        finally:
            if spinner is not None:
                stop.set()
                spinner.join()
        key = "other_core_busy" if busy else "idle"
        results[key] = {f"{t}_thread{'s' if t > 1 else ''}": {"median_ms_per_step": round(1000 * statistics.median(v), 3),
                                                                "ms_per_step": [round(1000 * x, 3) for x in v]} for t, v in times.items()}
        results[key]["speedup_2_over_1"] = round(statistics.median(times[1]) / statistics.median(times[2]), 3)
    record = {
        "benchmark": "threads",
        "command": "python benchmarks/threads.py " + " ".join(sys.argv[1:]),
        "model": "TimeMLP hidden 256 depth 3 (AGM toy config, method=baseline), batch 256, AdamW, 2-D data",
        "steps_per_timing": args.steps,
        "rounds": args.rounds,
        "cpu_count": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "note": "'idle' means no spinner of ours; the machine may be shared with other work (see the load averages)",
        "results": results,
    }
    path = write_result(args.out, record)
    print(path)
    import json

    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
