"""``agm agm train|sample|eval|demo`` and AGM's short forms ``agm train|sample|eval|demo`` (the flagship)."""
from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_demo(args: argparse.Namespace) -> int:
    from agm.methods.agm.demo import run_demo

    run_demo(args.out, dataset=args.dataset, steps=args.steps, seed=args.seed, plots=not args.no_plots, overwrite=args.overwrite)
    print(f"wrote {Path(args.out) / 'metrics.json'}")
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("demo", help="drift-only vs AGM on a built-in 2-D set (about 1-3 minutes on 2 CPU cores)")
    d.add_argument("--out", default="runs/demo", help="output folder (default: runs/demo; must be new or empty unless --overwrite)")
    d.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty --out folder")
    d.add_argument("--dataset", default="checkerboard",
                   help="built-in 2-D set: checkerboard (default), moons, 8gaussians, pinwheel, swissroll, unbalanced_mixture")
    d.add_argument("--steps", type=int, default=10000, help="training steps for each model (default: 10000, as the toy config)")
    d.add_argument("--seed", type=int, default=0, help="seed shared by both models (default: 0)")
    d.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    d.set_defaults(func=_cmd_demo)


def register(sub: argparse._SubParsersAction) -> None:
    from agm.command_line import add_eval, add_method, add_sample, add_train
    from agm.methods.agm.run import RECIPE

    msub = add_method(sub, RECIPE, help="AGM, its drift-only baseline and controls (method=baseline|agm|time_weight|fixed_weight|agm_path; short forms agm train|sample|eval|demo)")
    _add_demo(msub)
    add_train(sub, RECIPE, help="AGM: train a model from a config (short for 'agm agm train')")
    add_sample(sub, RECIPE, help="AGM: sample from a run's EMA drift; V_phi is not loaded (short for 'agm agm sample')")
    add_eval(sub, RECIPE, help="AGM: W2, MMD, energy distance, PRDC of a run's samples (short for 'agm agm eval')")
    _add_demo(sub)
