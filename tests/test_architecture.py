"""House rules of docs/architecture.md, checked by walking the imports of every module under src/agm."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "agm"
CORE = ("errors", "tensors", "paths", "samplers", "nets", "manifolds", "objectives", "training", "metrics", "data")


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every agm module imported anywhere in the file (top level or inside functions)."""
    tree = ast.parse(path.read_text())
    out = set()
    pkg = _module_name(path) if path.name == "__init__.py" else _module_name(path).rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("agm")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("agm"):
                out.add(mod)
                out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def _modules():
    return {_module_name(p): _imports(p) for p in SRC.rglob("*.py")}


def _package(mod: str) -> str:
    """The unit the rules talk about: agm.<core package>, agm.methods.<name>, or a top-level module."""
    parts = mod.split(".")
    if len(parts) >= 3 and parts[1] == "methods":
        return ".".join(parts[:3])
    return ".".join(parts[:2])


def test_core_never_imports_a_method():
    bad = [(m, i) for m, imps in _modules().items() if m.count(".") and _package(m).split(".")[1] in CORE
           for i in imps if i.startswith("agm.methods")]
    assert not bad, f"core modules importing methods: {bad}"


def test_no_two_packages_import_each_other():
    mods = _modules()
    known = set(mods)
    edges = set()
    for m, imps in mods.items():
        for i in imps:
            # resolve 'agm.x.y.Name' to the longest known module prefix
            while i not in known and "." in i:
                i = i.rsplit(".", 1)[0]
            a, b = _package(m), _package(i)
            if a != b and b != "agm":
                edges.add((a, b))
    cycles = sorted({tuple(sorted((a, b))) for a, b in edges if (b, a) in edges})
    assert not cycles, f"packages importing each other: {cycles}"


def test_methods_use_each_other_only_through_their_public_init():
    bad = []
    for m, imps in _modules().items():
        if not m.startswith("agm.methods."):
            continue
        own = _package(m)
        for i in imps:
            if i.startswith("agm.methods.") and _package(i) != own and i.count(".") > 2:
                target = _package(i)
                if not (i.rsplit(".", 1)[0] == target and i.rsplit(".", 1)[1][:1].isupper() or i == target):
                    bad.append((m, i))
    assert not bad, f"methods reaching into another method's modules: {bad}"


def test_only_cli_modules_parse_arguments():
    allowed = {"agm.cli", "agm.command_line"}
    bad = []
    for p in SRC.rglob("*.py"):
        name = _module_name(p)
        if name in allowed or name.endswith(".cli"):
            continue
        if "argparse" in p.read_text():
            bad.append(name)
    assert not bad, f"modules other than CLI modules use argparse: {bad}"
