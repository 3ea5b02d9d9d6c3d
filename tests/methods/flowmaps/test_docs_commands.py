"""Every `agm ...` command line in docs/flowmaps.md parses with the real parser (agm.cli.build_parser)."""
import re
import shlex
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "flowmaps.md"


def command_lines():
    text = DOC.read_text()
    lines = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S):
        for ln in block.replace("\\\n", " ").splitlines():
            ln = ln.split("#")[0].strip()
            if ln.startswith("agm "):
                lines.append(ln)
    return lines


def test_every_documented_command_parses():
    from agm.cli import split_overrides, build_parser

    lines = command_lines()
    assert len(lines) >= 5, lines
    parser = build_parser()
    for ln in lines:
        rest, overrides = split_overrides(shlex.split(ln)[1:])
        args = parser.parse_args(rest)  # SystemExit (a test error) on an unknown command or option
        assert callable(args.func), ln
        if overrides:
            assert hasattr(args, "overrides"), f"{ln}: takes no key=value overrides"
            from agm.methods.flowmaps.config import Config
            from agm.training.config import all_keys

            keys = all_keys(Config())
            assert all(o.split("=", 1)[0] in keys for o in overrides), (ln, overrides)
