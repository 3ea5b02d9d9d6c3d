"""Every `agm ...` command line shown in README.md and docs/*.md parses with the real parser (agm.cli.build_parser)."""
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _command_lines():
    out = []
    for doc in DOCS:
        in_code = False
        for i, line in enumerate(doc.read_text().splitlines(), 1):
            if line.strip().startswith("```"):
                in_code = not in_code
                continue
            candidates = [line] if in_code else re.findall(r"`(agm [^`]+)`", line)
            for c in candidates:
                mention = not in_code  # an inline mention names a command; its path must exist (checked with --help)
                c = c.split("#")[0].strip().rstrip("\\").strip()
                m = re.search(r"(?:^|\s|/)(agm(?:\.cli)?)\s+(.*)$", c)
                if not m or c.startswith(("from ", "import ", "pip ", "python -c")):
                    continue
                if not (c.startswith("agm ") or "-m agm.cli" in c or c.startswith(("$ agm", ".venv/bin/agm", "bin/agm"))):
                    continue
                args = m.group(2)
                if "..." in args or "|" in args.split("--")[0] or "[" in args or "<" in args:  # a grammar summary
                    continue
                if mention:
                    args = " ".join(a for a in args.split() if not a.startswith("-") and "=" not in a) + " --help"
                out.append(pytest.param(doc.name, i, args, id=f"{doc.name}:{i}"))
    return out


@pytest.mark.parametrize("doc,line,args", _command_lines())
def test_documented_command_parses(doc, line, args):
    from agm.cli import split_overrides, build_parser

    argv = shlex.split(args)
    rest, overrides = split_overrides(argv)
    parser = build_parser()
    try:
        ns = parser.parse_args(rest)
    except SystemExit as e:  # --help / --version exit 0; a parse error exits 2
        assert e.code == 0, f"{doc}:{line}: `agm {args}` does not parse"
        return
    assert not overrides or hasattr(ns, "overrides"), f"{doc}:{line}: `agm {args}`: this command takes no key=value overrides"


def test_the_docs_show_commands():
    assert len(_command_lines()) >= 10
