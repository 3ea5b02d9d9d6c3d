"""``agm bellman train|sample|eval|rl``: Bellman Diffusion (Li et al., arXiv 2410.01796; docs/bellman.md).

    agm bellman train --out runs/bd_moons data.name=moons          fit f ~ p, g ~ grad p (Eqs. 8-11)
    agm bellman sample --run runs/bd_moons --n 2000 --out s.npy     Bellman Diffusion Dynamics (Eq. 13)
    agm bellman eval --run runs/bd_moons                            metrics against the held-out split
    agm bellman rl --out runs/bd_cartpole agent=bd                  distributional RL (sec. 5) or C51; --resume DIR

Imports stay inside the command functions so that ``agm --help`` stays fast.
"""
from __future__ import annotations

import argparse


def _cmd_rl(args: argparse.Namespace) -> int:
    import json

    from agm.errors import AGMError

    from agm.methods.bellman.config import load_rl_config
    from agm.methods.bellman.rl.train import resume_rl_run, train_rl_run

    if args.resume:
        if args.config or args.out or args.overwrite or args.overrides:
            raise AGMError("--resume DIR takes no --config/--out/--overwrite/key=value: the run's config.yaml is used")
        summary = resume_rl_run(args.resume)
    else:
        if not args.out:
            raise AGMError("--out DIR is required (or --resume DIR)")
        cfg = load_rl_config(args.config, list(args.overrides))
        summary = train_rl_run(cfg, args.out, overwrite=args.overwrite)
    print(json.dumps(summary))
    return 0


def _add_rl(sub: argparse._SubParsersAction) -> None:
    from agm.command_line import keys_help
    from agm.methods.bellman.config import RLConfig

    class _Keys:  # keys_help reads config_cls
        config_cls = RLConfig

    r = sub.add_parser(
        "rl",
        help="distributional RL on a gymnasium env: Bellman Diffusion return fields (agent=bd) or C51 (agent=c51)",
        description="Train a distributional agent (Bellman Diffusion sec. 5, arXiv 2410.01796, or C51) with checkpoints; "
        "a killed run continues exactly with --resume DIR. See docs/bellman.md.",
        epilog=keys_help(_Keys),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--config", help="YAML file of RL config keys (default: the dataclass defaults)")
    r.add_argument("--out", help="new run folder (must be absent or empty unless --overwrite)")
    r.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty --out folder")
    r.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its newest checkpoint")
    r.set_defaults(func=_cmd_rl, overrides=[])


def register(subparsers) -> None:
    """Add ``agm bellman train|sample|eval`` (generated from the recipe) and ``agm bellman rl``."""
    from agm.command_line import add_method
    from agm.methods.bellman.run import RECIPE

    msub = add_method(subparsers, RECIPE, help="Bellman Diffusion: field matching, its sampling dynamics, distributional RL")
    _add_rl(msub)
