"""CPU training-step speed: drift-only vs AGM, and our bridge-matching step vs torchcfm's ConditionalFlowMatcher.

Same TimeMLP (hidden 256, depth 3), batch 256, AdamW, 2-D data; each variant is timed in interleaved
rounds (A B C A B C ...) and the median steps/s is reported, with ratios computed within this run.
torchcfm (peer) is installed with `pip install --no-deps torchcfm` if it is missing (see ../shared/peers.md).

    python benchmarks/train_step.py [--rounds 7 --steps 100 --threads 2]
Writes benchmarks/results/train_step.json naming the machine.
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from agm.methods.agm.config import load_config
from agm.methods.agm import build_method
from agm.nets import TimeMLP
from agm.objectives import bridge_matching_loss
from agm.paths import BrownianBridge
from agm.training.results import write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def ensure_torchcfm() -> str | None:
    try:
        mod = importlib.import_module("torchcfm.conditional_flow_matching")
    except ImportError:
        r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "torchcfm"], capture_output=True, text=True)
        if r.returncode != 0:
            print("torchcfm could not be installed:", r.stderr[-500:])
            return None
        importlib.invalidate_caches()
        try:
            mod = importlib.import_module("torchcfm.conditional_flow_matching")
        except ImportError as e:  # a missing dependency of the peer
            print("torchcfm import failed:", e)
            return None
    import importlib.metadata as md

    return md.version("torchcfm")


def time_steps(step_fn, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        step_fn()
    return steps / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/train_step.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = torch.randn(10_000, 2)
    g = torch.Generator().manual_seed(0)

    def batch():
        return data[torch.randint(len(data), (args.batch,), generator=g)]

    variants = {}
    # 1) drift-only vs AGM (default toy config: sigma=0.5, V_phi at 1.4%)
    for name in ("baseline", "agm"):
        cfg = load_config("toy", [f"method={name}"])
        m, _ = build_method(cfg, (2,))
        opt = torch.optim.AdamW([p for n in m.networks().values() for p in n.parameters()], lr=1e-3)

        def step(m=m, opt=opt):
            loss, _ = m.loss(batch(), 1000, g)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        variants[f"{name}_sigma0.5"] = step

    # 2) flow matching (sigma = 0) step: ours vs torchcfm with the same network, batch and optimiser
    ours_net = TimeMLP(2, hidden=256, depth=3)
    ours_opt = torch.optim.AdamW(ours_net.parameters(), lr=1e-3)
    path = BrownianBridge(0.0)

    def ours_fm():
        x1 = batch()
        x0 = torch.randn(x1.shape, generator=g)
        loss = bridge_matching_loss(ours_net, path, x0, x1, generator=g)[0].mean()
        ours_opt.zero_grad(set_to_none=True)
        loss.backward()
        ours_opt.step()

    variants["agm_bridge_matching_sigma0"] = ours_fm
    cfm_version = ensure_torchcfm()
    if cfm_version:
        from torchcfm.conditional_flow_matching import ConditionalFlowMatcher

        cfm = ConditionalFlowMatcher(sigma=0.0)
        cfm_net = TimeMLP(2, hidden=256, depth=3)
        cfm_net.load_state_dict(ours_net.state_dict())
        cfm_opt = torch.optim.AdamW(cfm_net.parameters(), lr=1e-3)

        def cfm_step():
            x1 = batch()
            x0 = torch.randn(x1.shape, generator=g)
            t, xt, ut = cfm.sample_location_and_conditional_flow(x0, x1)
            loss = ((cfm_net(xt, t) - ut) ** 2).mean()
            cfm_opt.zero_grad(set_to_none=True)
            loss.backward()
            cfm_opt.step()

        variants["torchcfm_ConditionalFlowMatcher_sigma0"] = cfm_step

    for fn in variants.values():  # warm-up
        time_steps(fn, 10)
    rates: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(args.rounds):
        for k, fn in variants.items():
            rates[k].append(time_steps(fn, args.steps))
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratios = {"agm_over_baseline_step_time": med["baseline_sigma0.5"] / med["agm_sigma0.5"]}
    if cfm_version:
        ratios["agm_over_torchcfm_step_time"] = med["torchcfm_ConditionalFlowMatcher_sigma0"] / med["agm_bridge_matching_sigma0"]
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
                    "threads": args.threads, "torch": torch.__version__},
        "settings": {"batch": args.batch, "steps_per_round": args.steps, "rounds": args.rounds, "net": "TimeMLP(2, 256, depth 3)"},
        "peer": {"torchcfm": cfm_version},
        "steps_per_second_median": med,
        "steps_per_second_all": rates,
        "ratios": ratios,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_result(args.out, result)
    for k, v in med.items():
        print(f"{k:<42} {v:8.1f} steps/s")
    for k, v in ratios.items():
        print(f"{k:<42} {v:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
