"""The one CLI grammar, generated from a :class:`~agm.training.recipe.Recipe` (a CLI module: it parses arguments).

    agm <method> train [--config C] --out DIR [--overwrite] [--data PATH] [--device D] [key=value ...]
    agm <method> train --resume DIR
    agm <method> sample --run DIR --n N --out FILE.npy [--device D] [--seed S] [method options]
    agm <method> eval --run DIR [--data FILE] [--n N] [--device D] [--seed S]

The options of ``train`` are the method's config dataclass: ``agm <method> train --help`` lists every key
with its type and default, and ``key=value`` overrides may stand anywhere on the line.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, Callable

from agm.errors import AGMError, ConfigError


def _is_main() -> bool:
    return int(os.environ.get("RANK", 0)) == 0


def keys_help(recipe: Any) -> str:
    from agm.training.config import key_table

    rows = key_table(recipe.config_cls())
    width = max(len(k) for k, _, _ in rows)
    return "config keys (key=value, anywhere on the line):\n" + "\n".join(
        f"  {k:<{width}}  {tp:<14} default: {json.dumps(v)}" for k, tp, v in rows
    )


def add_train(sub: argparse._SubParsersAction, recipe: Any, name: str = "train", *, data_key: str | None = "data.path",
              help: str | None = None) -> argparse.ArgumentParser:
    builtin = sorted(p.stem for p in recipe.builtin_dir.glob("*.yaml")) if recipe.builtin_dir else []
    t = sub.add_parser(
        name,
        help=help or f"train {recipe.name}: a new run folder, or --resume one",
        description=recipe.description or None,
        epilog=keys_help(recipe) + "\n\nMulti-GPU / multi-process: torchrun --nproc_per_node N -m agm.cli "
        f"{'' if recipe.name == 'agm' and name == 'train' else recipe.name + ' '}train ... (DDP; train.batch_size is the global batch).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    t.add_argument("--config", help=f"YAML file or built-in name {builtin} (default: {recipe.default_config or 'the dataclass defaults'})")
    t.add_argument("--out", help="new run folder (must be absent or empty unless --overwrite)")
    t.add_argument("--overwrite", action="store_true", help="replace the contents of a non-empty --out folder")
    if data_key:
        t.add_argument("--data", help=f"user data file (sets {data_key})")
    t.add_argument("--device", help="train.device: auto (CUDA when present), cpu, cuda, cuda:N (default: the config's)")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its newest checkpoint")
    t.set_defaults(func=_train_fn(recipe, data_key), overrides=[])
    return t


def _train_fn(recipe: Any, data_key: str | None) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from agm.training.recipe import resume_run, train_run

        if args.resume:
            extra = [f for f in ("config", "out", "data", "device") if getattr(args, f, None)] + (["key=value"] if args.overrides else [])
            if extra or args.overwrite:
                raise AGMError(f"--resume DIR takes no --{'/--'.join(extra or ['overwrite'])}: the run's config.yaml is used")
            step = resume_run(recipe, args.resume)
            if _is_main():
                print(f"resumed {args.resume} to step {step}")
            return 0
        if not args.out:
            raise AGMError("--out DIR is required (or --resume DIR)")
        overrides = list(args.overrides)
        if data_key and getattr(args, "data", None):
            overrides.append(f"{data_key}={json.dumps(args.data)}")
        if args.device:
            overrides.append(f"train.device={args.device}")
        cfg = recipe.load_config(args.config, overrides)
        info = train_run(recipe, cfg, args.out, overwrite=args.overwrite)
        if _is_main():
            summary = {"out": args.out, "method": recipe.name, **{k: v for k, v in info.items() if k in recipe_summary_keys(info)}}
            print(json.dumps(summary))
        return 0

    return run


def recipe_summary_keys(info: dict[str, Any]) -> list[str]:
    return [k for k in ("data_shape", "potential_param_ratio", "drift_params", "params") if k in info]


def add_sample(sub: argparse._SubParsersAction, recipe: Any, name: str = "sample", help: str | None = None) -> argparse.ArgumentParser:
    s = sub.add_parser(name, help=help or f"sample from a {recipe.name} run (EMA networks)")
    s.add_argument("--run", required=True, help="run folder")
    s.add_argument("--n", type=int, required=True, help="number of samples")
    s.add_argument("--out", required=True, help="output file: .npy or .csv")
    s.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    s.add_argument("--device", default="auto", help="auto (CUDA when present, default), cpu, cuda, cuda:N")
    _add_sample_options(s, recipe)
    s.set_defaults(func=_sample_fn(recipe))
    return s


def _add_sample_options(p: argparse.ArgumentParser, recipe: Any) -> None:
    for opt, (tp, default, text) in recipe.sample_options.items():
        p.add_argument(f"--{opt.replace('_', '-')}", dest=f"opt_{opt}", type=tp, default=default, help=text)


def _options(args: argparse.Namespace, recipe: Any) -> dict[str, Any]:
    return {k: getattr(args, f"opt_{k}") for k in recipe.sample_options if getattr(args, f"opt_{k}") is not None}


def _sample_fn(recipe: Any) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from agm.data.files import save_array
        from agm.training.recipe import sample_run
        from agm.training.runs import check_writable_file

        if args.n <= 0:
            raise ConfigError(f"--n={args.n} must be > 0")
        out = check_writable_file(args.out, "--out", suffixes=(".npy", ".csv"))
        if out.exists():
            raise ConfigError(f"--out {out} already exists; choose a new file name (agm never overwrites a result file)")
        x = sample_run(recipe, args.run, args.n, seed=args.seed, device=args.device, **_options(args, recipe))
        if x.dim() <= 2:
            save_array(x, out, header=_column_names(args.run) if out.suffix.lower() == ".csv" else None)
        else:
            _save_npy(x, out)
        print(f"wrote {args.n} samples of shape {tuple(x.shape[1:])} to {out}")
        return 0

    return run


def _column_names(run_dir: Any) -> list[str] | None:
    """The column names of the table a run was trained on (kept in its data transform), if it had a header."""
    from agm.training.recipe import load_transform

    tr = load_transform(run_dir)
    return None if tr is None else tr.names


def _save_npy(x: Any, out: Path) -> None:
    import numpy as np

    if out.suffix != ".npy":
        raise ConfigError(f"--out {out}: samples of shape {tuple(x.shape[1:])} are written as .npy only")
    np.save(out, x.cpu().numpy())


def add_eval(sub: argparse._SubParsersAction, recipe: Any, name: str = "eval", help: str | None = None) -> argparse.ArgumentParser:
    e = sub.add_parser(name, help=help or f"evaluate a {recipe.name} run's samples against held-out data (writes eval.json)")
    e.add_argument("--run", required=True, help="run folder")
    e.add_argument("--data", default=None, help="reference data file (default: the run's held-out split)")
    e.add_argument("--n", type=int, default=None, help="number of samples (default: the run's eval.n_samples)")
    e.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    e.add_argument("--device", default="auto", help="auto (CUDA when present, default), cpu, cuda, cuda:N")
    _add_sample_options(e, recipe)
    e.set_defaults(func=_eval_fn(recipe))
    return e


def _eval_fn(recipe: Any) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from agm.training.recipe import evaluate_run

        metrics = evaluate_run(recipe, args.run, args.data, n=args.n, seed=args.seed, device=args.device, **_options(args, recipe))
        print(json.dumps(metrics, indent=1))
        return 0

    return run


def add_method(sub: argparse._SubParsersAction, recipe: Any, *, help: str, data_key: str | None = "data.path") -> argparse._SubParsersAction:
    """``agm <recipe.name> train|sample|eval``; returns the method's sub-parsers so that it can add more commands."""
    p = sub.add_parser(recipe.name, help=help, description=recipe.description or help)
    msub = p.add_subparsers(dest=f"{recipe.name}_command", required=True, metavar="COMMAND")
    add_train(msub, recipe, data_key=data_key)
    add_sample(msub, recipe)
    add_eval(msub, recipe)
    return msub


__all__ = ["add_method", "add_train", "add_sample", "add_eval", "keys_help"]
