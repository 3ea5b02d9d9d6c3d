"""Old (private Adam loops, commit dc082c1) vs new (agm.training.Trainer) synthetic results side by side.

    python experiments/bellman/compare_synthetic.py --old OLD_*.json --new NEW_*.json --out experiments/results/bellman_synthetic_old_vs_new.json

OLD / NEW files (their summaries are merged, e.g. one file per set): outputs of experiments/bellman/synthetic.py at the same settings (the old one run from a git
worktree of dc082c1). Prints a markdown table (mean ± sd over seeds) and writes both summaries with
agm.training.results.write_result, plus, per metric, whether |new - old| exceeds the larger seed sd.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROWS = [  # (label, key)
    ("BD finite fraction", "bellman_finite_fraction"),
    ("BD W2", "bellman_w2"),
    ("BD MMD", "bellman_mmd"),
    ("BD-clip W2", "bellman_clip_w2"),
    ("BD-clip MMD", "bellman_clip_mmd"),
    ("BD-clip KS", "bellman_clip_ks"),
    ("BD-clip mode-weight error", "bellman_clip_mode_weights_max_abs_err"),
    ("field peak-weight error", "peak_max_abs_err"),
    ("Langevin W2", "langevin_w2"),
    ("Langevin MMD", "langevin_mmd"),
    ("Langevin mode-weight error", "langevin_mode_weights_max_abs_err"),
]


def fmt(v) -> str:
    if v is None:
        return "–"
    if len(v) == 1:
        return f"{v[0]:.3g}"
    return f"{v[0]:.3g} ± {v[1]:.2g}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--old", nargs="+", required=True)
    ap.add_argument("--new", nargs="+", required=True)
    ap.add_argument("--out", default=None, help="combined results JSON (write_result)")
    args = ap.parse_args(argv)
    olds, news = ([json.loads(Path(p).read_text()) for p in files] for files in (args.old, args.new))
    old, new = olds[0], news[0]
    so = {k: v for o in olds for k, v in o["summary_mean_std_over_seeds"].items()}
    sn = {k: v for o in news for k, v in o["summary_mean_std_over_seeds"].items()}
    lines = ["| set (kernel) | metric | old: private Adam loop | new: Trainer | beyond seed sd? |", "| --- | --- | --- | --- | --- |"]
    flags = {}
    for key in so:
        for label, k in ROWS:
            a, b = so[key].get(k), sn.get(key, {}).get(k)
            if a is None and b is None:
                continue
            beyond = None
            if a is not None and b is not None and len(a) > 1 and len(b) > 1:
                beyond = abs(b[0] - a[0]) > max(a[1], b[1])
                flags[f"{key}/{k}"] = beyond
            lines.append(f"| {key} | {label} | {fmt(a)} | {fmt(b)} | {'yes' if beyond else ('no' if beyond is not None else '')} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))
        from agm.training.results import write_result

        write_result(args.out, {"command": " ".join(["python", "experiments/bellman/compare_synthetic.py", *(argv or sys.argv[1:])]),
                                "old": {"source": args.old, "commands": [o.get("command") for o in olds], "settings": old.get("settings"),
                                        "machine": old.get("machine"), "summary": so},
                                "new": {"source": args.new, "commands": [o.get("command") for o in news], "settings": new.get("settings"),
                                        "machine": new.get("machine"), "summary": sn},
                                "difference_beyond_seed_sd": flags, "markdown": table})
    return 0


if __name__ == "__main__":
    sys.exit(main())
