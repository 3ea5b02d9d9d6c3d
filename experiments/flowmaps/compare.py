"""Side-by-side tables of two or more flow-map benchmark JSONs (experiments/flowmaps/benchmark.py), e.g. the old
private loop vs the shared Trainer, or two learning rates:

    python experiments/flowmaps/compare.py experiments/results/flowmaps_old_reduced.json \
        experiments/results/flowmaps_reduced.json --labels old new

Prints, per data set and method, geodesic W2 (mean +- sd over seeds) at 1/2/4 steps and the many-step ODE for
each file, the difference of the means, whether it exceeds the seed spread (|diff| > sd_a + sd_b), and the paired
difference seed by seed (mean +- sd; the same seed gives the same initialisation, batches and prior draws in both
loops); then the mean W2 over every common (data set, method, steps) cell of each file.
"""
from __future__ import annotations

import argparse
import json

import numpy as np


def load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", help="benchmark result JSONs")
    p.add_argument("--labels", nargs="+", default=None, help="a label per file")
    p.add_argument("--metric", default="w2", help="w2 | mmd2 | mmd2_narrow (default w2)")
    args = p.parse_args(argv)
    labels = args.labels or [f"run{i}" for i in range(len(args.files))]
    res = [load(f) for f in args.files]
    datasets = [d for d in res[0]["datasets"] if all(d in r["datasets"] for r in res)]
    cells: dict[str, list[float]] = {lab: [] for lab in labels}
    for d in datasets:
        ref = res[0]["datasets"][d]["reference"]
        print(f"\n**{d}** (floor {ref['data_vs_heldout'][args.metric]:.3f}, prior {ref['prior_vs_heldout'][args.metric]:.3f})\n")
        print("| method | steps | " + " | ".join(labels) + (" | diff | > seed spread | paired diff (per seed) |" if len(labels) == 2 else " |"))
        print("|---|---|" + "---|" * len(labels) + ("---|---|---|" if len(labels) == 2 else ""))
        for method in res[0]["datasets"][d]["summary"]:
            if not all(method in r["datasets"][d]["summary"] for r in res):
                continue
            for key in res[0]["datasets"][d]["summary"][method]:
                es = [r["datasets"][d]["summary"][method].get(key) for r in res]
                if any(e is None for e in es):
                    continue
                ms = [e[args.metric]["mean"] for e in es]
                sds = [e[args.metric]["std"] for e in es]
                for lab, m in zip(labels, ms):
                    cells[lab].append(m)
                row = f"| {method} | {key} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(ms, sds))
                if len(labels) == 2:
                    diff = ms[1] - ms[0]
                    pa, pb = (np.array(e[args.metric]["per_seed"]) for e in es)
                    paired = pb - pa if pa.shape == pb.shape else np.array([np.nan])
                    row += (f" | {diff:+.3f} | {'yes' if abs(diff) > sds[0] + sds[1] else 'no'} | "
                            f"{paired.mean():+.3f} ± {paired.std(ddof=1) if paired.size > 1 else 0:.3f} |")
                else:
                    row += " |"
                print(row)
    print("\nmean over all common cells: " + ", ".join(f"{lab} {np.mean(v):.4f} ({len(v)} cells)" for lab, v in cells.items()))


if __name__ == "__main__":
    main()
