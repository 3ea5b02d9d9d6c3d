"""The ``agm`` command line: one registry of commands.

    agm <method> train|sample|eval ...   every method folder with a ``cli`` module registers its commands
    agm train|sample|eval|demo ...       AGM's short forms (the flagship)
    agm toy ...                          draw a built-in data set to a file
    agm score ...                        sample metrics of one file against another

``key=value`` config overrides may stand anywhere on a ``train`` command line. Only CLI modules parse
arguments (docs/architecture.md).
"""
from __future__ import annotations

import argparse
import re
import sys

from agm.errors import AGMError

_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*=")


def _cmd_toy(args: argparse.Namespace) -> int:
    from agm.data.files import save_array
    from agm.data.toy import make_toy

    x = make_toy(args.name, args.n, seed=args.seed)
    path = save_array(x, args.out)
    print(f"wrote {tuple(x.shape)} points of '{args.name}' (seed {args.seed}) to {path}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from agm.data.files import load_array
    from agm.metrics import evaluate
    from agm.training.runs import check_writable_file

    if args.out:
        check_writable_file(args.out, "--out", suffixes=(".json",))
    out = evaluate(load_array(args.samples), load_array(args.data), max_samples=args.max_samples, seed=args.seed, k=args.k)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        from agm.training.checkpoint import atomic_write_text

        atomic_write_text(Path(args.out), text + "\n")
    return 0


def _register_core(sub: argparse._SubParsersAction, *, list_toys: bool = True) -> None:
    """Add ``agm toy`` and ``agm score``. ``list_toys=False`` leaves the set names out of ``toy --name``'s help
    (listing them imports agm.data, so torch): for a parser that will not parse a ``toy`` command."""
    if list_toys:
        from agm.data.toy import toy_names

        names = f"set name, one of: {', '.join(toy_names())}"
    else:
        names = "set name (agm toy --help lists them)"
    p = sub.add_parser("toy", help="draw a built-in data set and write it to .npy/.csv")
    p.add_argument("--name", required=True, help=names)
    p.add_argument("--n", type=int, default=10000, help="number of points (default: 10000)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--out", required=True, help="output file, .npy or .csv")
    p.set_defaults(func=_cmd_toy)

    p = sub.add_parser("score", help="W2, MMD, energy distance and PRDC of a samples file against a data file")
    p.add_argument("--samples", required=True, help="generated samples, .npy or .csv of shape (N, D)")
    p.add_argument("--data", required=True, help="reference data, .npy or .csv of shape (M, D)")
    p.add_argument("--max-samples", type=int, default=2000, help="subsample each set to at most this many points (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="subsampling seed (default: 0)")
    p.add_argument("--k", type=int, default=5, help="neighbours for precision/recall/density/coverage (default: 5)")
    p.add_argument("--out", default=None, help="optional JSON file to write the metrics to")
    p.set_defaults(func=_cmd_score)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("agm-potentials")
    except PackageNotFoundError:
        import agm

        return getattr(agm, "__version__", "unknown")


_CORE_COMMANDS = ("toy", "score")

# `agm --help` lists these without importing any method (importing one pulls in torch and its stack, seconds):
# command word -> (method folder whose ``cli.register`` adds it, the help line that ``register`` gives it).
# tests/test_cli.py checks that every line equals what the method registers; a method in METHODS that is
# missing here is still found, by importing its cli module as before (slower, never wrong).
_METHOD_COMMANDS: dict[str, tuple[str, str]] = {
    "agm": ("agm", "AGM, its drift-only baseline and controls (method=baseline|agm|time_weight|fixed_weight|agm_path; "
                   "short forms agm train|sample|eval|demo)"),
    "train": ("agm", "AGM: train a model from a config (short for 'agm agm train')"),
    "sample": ("agm", "AGM: sample from a run's EMA drift; V_phi is not loaded (short for 'agm agm sample')"),
    "eval": ("agm", "AGM: W2, MMD, energy distance, PRDC of a run's samples (short for 'agm agm eval')"),
    "demo": ("agm", "drift-only vs AGM on a built-in 2-D set (about 1-3 minutes on 2 CPU cores)"),
    "bellman": ("bellman", "Bellman Diffusion: field matching, its sampling dynamics, distributional RL"),
    "efm": ("efm", "energy-weighted flow matching towards q ∝ p exp(-beta E) (train|sample|eval)"),
    "qipo": ("efm", "offline RL with QIPO (Q-weighted iterative policy optimisation, flow policy)"),
    "steering": ("steering", "steer pretrained flow models: SOC / adjoint-matching fine-tuning, relative rewards, learned samplers"),
    "flowmaps": ("flowmaps", "generalised flow maps on the sphere, flat torus, SO(3) and hyperbolic plane (few-step sampling)"),
}


def _first_command(argv: list[str] | None) -> str | None:
    """The command word of ``argv`` (its first token that is not an option), or None."""
    for tok in argv or []:
        if not tok.startswith("-"):
            return tok
    return None


def _register_method(sub: argparse._SubParsersAction, name: str) -> None:
    """Import ``agm.methods.<name>.cli`` (and so the method's package) and let it add its commands."""
    import importlib
    import importlib.util

    if importlib.util.find_spec(f"agm.methods.{name}.cli") is not None:
        importlib.import_module(f"agm.methods.{name}.cli").register(sub)


def _unregistered(cmd: str, method: str):
    def fail(args: argparse.Namespace) -> int:
        raise AGMError(f"agm.methods.{method}.cli does not register the command '{cmd}' (agm.cli._METHOD_COMMANDS is stale)")

    return fail


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The real parser: core commands, then every method's ``cli.register``.

    Without ``argv`` every method is imported and registered (the whole grammar, e.g. to check documented
    command lines). With ``argv``, only the method that owns the command ``argv`` names is imported (``agm
    train ...`` imports AGM alone, ``agm qipo ...`` EFM alone): commands start fast, and one method's import
    error cannot break another method's commands. When ``argv`` names no method command (``agm --help``,
    ``agm toy ...``, a typo) the method commands are listed from ``_METHOD_COMMANDS`` without any import.
    """
    from agm.methods import METHODS

    p = argparse.ArgumentParser(prog="agm", description="Generative models with a vector field and a scalar potential (AGM and friends).")
    p.add_argument("--version", action="version", version=f"agm {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if argv is None:
        for name in METHODS:
            _register_method(sub, name)
        _register_core(sub)
        return p
    wanted = _first_command(argv)
    listed = {method for method, _ in _METHOD_COMMANDS.values()}
    unlisted = [name for name in METHODS if name not in listed]
    if wanted in _METHOD_COMMANDS:
        _register_method(sub, _METHOD_COMMANDS[wanted][0])
    else:
        for name in unlisted:  # a method missing from the table: import it to learn its commands
            _register_method(sub, name)
            if wanted is not None and wanted in sub.choices:
                break
    if wanted not in sub.choices:  # help, a core command or a typo: list the method commands without importing them
        for cmd, (method, text) in _METHOD_COMMANDS.items():
            if cmd not in sub.choices and method in METHODS:
                sub.add_parser(cmd, help=text).set_defaults(func=_unregistered(cmd, method))
    _register_core(sub, list_toys=wanted == "toy")
    return p


def _flag_options(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of ``parser`` and its sub-parsers that takes no value (store_true, help, ...)."""
    out: set[str] = set()
    for action in parser._actions:
        if action.option_strings and action.nargs == 0:
            out.update(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= _flag_options(sub)
    return out


def split_overrides(argv: list[str], flags: set[str] | None = None) -> tuple[list[str], list[str]]:
    """Pull ``key=value`` tokens out of argv (wherever they stand) unless they are an option's value.

    ``flags``: the options that take no value (a key=value right after one is an override); default: the
    common ones, extended by :func:`main` with every such option of the real parser."""
    flags = _FLAGS if flags is None else (flags | _FLAGS)
    rest, overrides = [], []
    for i, tok in enumerate(argv):
        prev = argv[i - 1] if i > 0 else ""
        takes_value = prev.startswith("-") and "=" not in prev and prev not in flags
        if _OVERRIDE.match(tok) and not takes_value:
            overrides.append(tok)
        else:
            rest.append(tok)
    return rest, overrides


# options that take no value (so a key=value after them is an override, not their value)
_FLAGS = {"--overwrite", "--no-plots", "--help", "-h", "--version", "--progress", "--no-progress", "--keep-going"}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--version"]:  # answered without importing any method
        print(f"agm {_version()}")
        return 0
    parser = build_parser([t for t in argv if not _OVERRIDE.match(t)])
    rest, overrides = split_overrides(argv, _flag_options(parser))
    args = parser.parse_args(rest)
    if overrides:
        if not hasattr(args, "overrides"):
            parser.error(f"unrecognised arguments: {' '.join(overrides)} ('agm {args.command}' takes no key=value config overrides)")
        args.overrides = list(getattr(args, "overrides", None) or []) + overrides
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
