"""Every `agm ...` command line in the user docs parses with the real parser (issue 16)."""
import re
import shlex
from pathlib import Path

import pytest

from agm.cli import split_overrides, build_parser

DOCS = Path(__file__).resolve().parents[1] / "docs"
FILES = ["data.md", "runs.md", "data_metrics.md", "images.md"]


def _command_lines(text: str) -> list[str]:
    """`agm ...` lines of ```bash blocks and of inline code spans."""
    out = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("agm "):
                out.append(line)
    for span in re.findall(r"`(agm [^`]+)`", text):
        # prose that names a command or an option ("`agm train --data`", "`--resume DIR`") is not a command line;
        # an inline span with placeholders (FILE, DIR, N, <cmd>, ...) or ending in a bare option is skipped
        words = span.split()
        if re.search(r"\b[A-Z]{1,}\b|[<>]|\.\.\.", span) or words[-1].startswith("-") or len(words) < 3:
            continue
        out.append(span)
    return out


@pytest.mark.parametrize("name", FILES)
def test_doc_command_lines_parse(name, capsys):
    lines = _command_lines((DOCS / name).read_text())
    if name in ("data.md", "runs.md", "data_metrics.md"):
        assert lines, f"docs/{name} shows no agm command line"
    for line in lines:
        argv = shlex.split(line)[1:]
        rest, overrides = split_overrides(argv)
        parser = build_parser(rest)
        try:
            args = parser.parse_args(rest)
        except SystemExit as e:
            if e.code != 0:
                pytest.fail(f"docs/{name}: `{line}` does not parse: {capsys.readouterr().err}")
            continue
        if overrides:
            assert hasattr(args, "overrides"), f"docs/{name}: `{line}`: {args.command} takes no key=value overrides"
            if hasattr(args, "func") and args.command in ("train",) and not getattr(args, "resume", None):
                from agm.methods.agm.run import RECIPE

                RECIPE.load_config(args.config, overrides)  # every key exists and every value has the right type
