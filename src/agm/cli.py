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


def _register_core(sub: argparse._SubParsersAction) -> None:
    from agm.data.toy import toy_names

    p = sub.add_parser("toy", help="draw a built-in data set and write it to .npy/.csv")
    p.add_argument("--name", required=True, help=f"set name, one of: {', '.join(toy_names())}")
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


def _first_command(argv: list[str] | None) -> str | None:
    """The command word of ``argv`` (its first token that is not an option), or None."""
    for tok in argv or []:
        if not tok.startswith("-"):
            return tok
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The real parser: core commands, then every method's ``cli.register``.

    With ``argv``, method CLI modules are imported only until one registers the command ``argv`` names
    (``agm train ...`` imports AGM's CLI alone): commands start fast, and one method's import error cannot
    break another method's commands. Without ``argv`` (or for ``agm --help``) every method is registered.
    """
    import importlib
    import importlib.util

    from agm.methods import METHODS

    p = argparse.ArgumentParser(prog="agm", description="Generative models with a vector field and a scalar potential (AGM and friends).")
    p.add_argument("--version", action="version", version=f"agm {_version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = _first_command(argv)
    if wanted in _CORE_COMMANDS:
        _register_core(sub)
        return p
    order = list(METHODS)
    if wanted in order:  # `agm <method> ...`: that method first (and, found, alone)
        order.remove(wanted)
        order.insert(0, wanted)
    for name in order:
        if importlib.util.find_spec(f"agm.methods.{name}.cli") is not None:
            importlib.import_module(f"agm.methods.{name}.cli").register(sub)
        if wanted is not None and wanted in sub.choices:
            break
    _register_core(sub)
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
