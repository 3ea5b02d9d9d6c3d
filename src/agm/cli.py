"""The ``agm`` command line: demo, train, sample, eval (and the methods' own sub-commands)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from agm.errors import AGMError


def _cmd_demo(args: argparse.Namespace) -> int:
    from agm.demo import run_demo

    run_demo(args.out, dataset=args.dataset, steps=args.steps, seed=args.seed, plots=not args.no_plots)
    print(f"wrote {Path(args.out) / 'metrics.json'}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from agm.config import load_config
    from agm.run import resume, train

    if args.resume:
        if args.config or args.out or args.overrides or args.data:
            raise AGMError("--resume DIR takes no --config/--out/--data/overrides: the run's config.yaml is used")
        step = resume(args.resume)
        if int(os.environ.get("RANK", 0)) == 0:
            print(f"resumed {args.resume} to step {step}")
        return 0
    if not args.out:
        raise AGMError("--out DIR is required (or --resume DIR)")
    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.path={args.data}")
    cfg = load_config(args.config or "default", overrides)
    info = train(cfg, args.out)
    if int(os.environ.get("RANK", 0)) != 0:
        return 0
    print(json.dumps({"out": args.out, **{k: info[k] for k in ("data_shape", "potential_param_ratio", "drift_params")}}))
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    import numpy as np

    from agm.run import sample_run

    x = sample_run(args.run, args.n, steps=args.steps, seed=args.seed, device=args.device)
    out = Path(args.out)
    if out.suffix != ".npy":
        raise AGMError(f"--out {out} must end in .npy")
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, x.cpu().numpy())
    print(f"wrote {args.n} samples of shape {tuple(x.shape[1:])} to {out}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from agm.run import evaluate_run

    metrics = evaluate_run(args.run, args.data, n=args.n, seed=args.seed)
    print(json.dumps(metrics, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from agm.config import all_keys, builtin_configs

    p = argparse.ArgumentParser(prog="agm", description="Generative models with a vector field and a scalar potential (AGM and friends).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = sub.add_parser("demo", help="drift-only vs AGM on a built-in 2-D set (about 1-3 minutes on 2 CPU cores)")
    d.add_argument("--out", default="runs/demo", help="output directory (default: runs/demo)")
    d.add_argument("--dataset", default="checkerboard",
                   help="built-in 2-D set: checkerboard (default), moons, 8gaussians, pinwheel, swissroll, unbalanced_mixture")
    d.add_argument("--steps", type=int, default=10000, help="training steps for each model (default: 10000, as the toy config)")
    d.add_argument("--seed", type=int, default=0, help="seed shared by both models (default: 0)")
    d.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    d.set_defaults(func=_cmd_demo)

    t = sub.add_parser(
        "train",
        help="train a model from a config",
        description="Train from a YAML config or a built-in one, with key=value overrides. Config keys: " + ", ".join(all_keys()),
        epilog="Multi-GPU / multi-process: torchrun --nproc_per_node N -m agm.cli train ... (DDP; train.batch_size is the "
        "global batch; rank 0 writes the run directory).",
    )
    t.add_argument("--config", help=f"YAML file or built-in name {builtin_configs()} (default: default)")
    t.add_argument("--out", help="new run directory")
    t.add_argument("--data", help="user data: .npy or .csv of shape (N, D) (sets data.path)")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its latest checkpoint")
    t.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. method=baseline train.steps=500")
    t.set_defaults(func=_cmd_train)

    s = sub.add_parser("sample", help="sample from a run's EMA drift (V_phi is not loaded)")
    s.add_argument("--run", required=True, help="run directory")
    s.add_argument("--n", type=int, required=True, help="number of samples")
    s.add_argument("--steps", type=int, default=None, help="integration steps (default: the run's sample.steps)")
    s.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    s.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    s.add_argument("--out", required=True, help="output .npy file")
    s.set_defaults(func=_cmd_sample)

    e = sub.add_parser("eval", help="evaluate a run's samples (W2, MMD, energy distance, precision/recall/density/coverage)")
    e.add_argument("--run", required=True, help="run directory")
    e.add_argument("--data", default=None, help="reference data .npy/.csv (default: the run's held-out split)")
    e.add_argument("--n", type=int, default=None, help="number of samples (default: the run's eval.n_samples)")
    e.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    e.set_defaults(func=_cmd_eval)

    _register_command_modules(sub)
    return p


def _register_command_modules(sub: argparse._SubParsersAction) -> None:
    """Add the sub-commands of every module in :mod:`agm.commands` (each defines ``register(sub)``)."""
    import importlib
    import pkgutil

    import agm.commands

    for info in sorted(pkgutil.iter_modules(agm.commands.__path__), key=lambda m: m.name):
        importlib.import_module(f"agm.commands.{info.name}").register(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AGMError as e:
        print(f"agm {args.command}: error: {e}", file=sys.stderr)
        return 2
    finally:
        if "torch.distributed" in sys.modules:  # a torchrun launch: leave the process group cleanly
            from agm.training.distributed import cleanup

            cleanup()


if __name__ == "__main__":
    sys.exit(main())
