"""The geometry core stays free of methods: nothing under agm.manifolds, agm.paths, agm.samplers or agm.metrics imports
agm.methods (the old import circles manifolds <-> objectives/paths/samplers went through manifolds/training.py)."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "agm"


def test_geometry_core_never_imports_a_method():
    bad = []
    for pkg in ("manifolds", "paths", "samplers", "metrics"):
        for f in (SRC / pkg).rglob("*.py"):
            for node in ast.walk(ast.parse(f.read_text())):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                bad += [f"{f.relative_to(SRC)}: {n}" for n in names if n.startswith("agm.methods")]
    assert not bad, bad
    assert (SRC / "manifolds" / "sphere.py").exists()  # the walk saw the files
