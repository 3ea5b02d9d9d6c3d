"""Issue 14: what "clip to [0.1, 10], renormalise once" gave, and what the exact clip gives (docs/agm.md, "Clipping").

    python experiments/agm/clip_check.py     # writes experiments/results/agm_clip_check.json (seconds)

Cases: a degenerate batch of 256 (V_0 = -100, the others 0) and 50 seeded batches of 256 with V ~ 3 N(0, 1).
Reports the largest weight and the batch mean for the old rule, the exact rule (agm.methods.agm.importance_weights)
and "clip, renormalise" iterated 20,000 times, and the largest difference between the iterated and the exact weights.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from agm.methods.agm import importance_weights
from agm.training.results import write_result

ROOT = Path(__file__).resolve().parents[2]
LO, HI = 0.1, 10.0


def old_rule(v: torch.Tensor) -> torch.Tensor:
    w = torch.softmax(-v.double(), 0) * v.numel()
    w = w.clamp(LO, HI)
    return w / w.mean()


def iterated(v: torch.Tensor, rounds: int = 20000) -> torch.Tensor:
    w = torch.softmax(-v.double(), 0) * v.numel()
    for _ in range(rounds):
        w = w.clamp(LO, HI)
        w = w / w.mean()
    return w


def summary(v: torch.Tensor) -> dict:
    old, exact, it = old_rule(v), importance_weights(v, clip=(LO, HI)).double(), iterated(v)
    return {"old_max": float(old.max()), "old_mean": float(old.mean()), "exact_max": float(exact.max()), "exact_min": float(exact.min()),
            "exact_mean": float(exact.mean()), "iterated_max": float(it.max()), "iterated_mean": float(it.mean()),
            "iterated_minus_exact_max_abs": float((it - exact).abs().max())}


def main() -> int:
    torch.set_num_threads(1)
    v = torch.zeros(256)
    v[0] = -100.0
    g = torch.Generator().manual_seed(0)
    gauss = [summary(3 * torch.randn(256, generator=g)) for _ in range(50)]
    result = {
        "command": "python " + " ".join(sys.argv),
        "clip": [LO, HI],
        "degenerate": summary(v),
        "gaussian3_50_batches": {k: {"max": max(s[k] for s in gauss), "min": min(s[k] for s in gauss)} for k in gauss[0]},
    }
    write_result(ROOT / "experiments/results/agm_clip_check.json", result)
    print(result["degenerate"])
    print(result["gaussian3_50_batches"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
