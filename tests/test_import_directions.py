"""The house rules: which room may import which, and no import cycles (see docs/engineering/architecture.md).

Every `import` of the project's own code, at module level or inside a function, is an edge from the
importing module's room to the imported module's room; each edge must be allowed below. Rooms are
listed from the top of the house (entry points) to its foundation (config).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("config", "segments", "shopmail", "tasks", "flows")

FOUNDATION = {"config", "shopmail.core"}
SHOPMAIL_LOW = FOUNDATION | {
    "segments",
    "segments.audiences",
    "shopmail.mailer",
    "shopmail.mail",
    "shopmail.shop",
}
ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "segments": {"config"},
    "segments.audiences": {"config", "segments"},
    "shopmail.core": {"config"},
    "shopmail.mailer": FOUNDATION,
    "shopmail.mail": FOUNDATION,
    "shopmail.shop": FOUNDATION | {"segments"},
    "shopmail.state": FOUNDATION | {"shopmail.shop", "shopmail.mail", "shopmail.mailer"},
    "shopmail.results": FOUNDATION | {"segments", "shopmail.shop", "shopmail.state"},
    "shopmail.run": SHOPMAIL_LOW | {"shopmail.state"},
    "shopmail.web": FOUNDATION | {"shopmail.mail", "shopmail.state"},
    "shopmail.devtools": SHOPMAIL_LOW
    | {"shopmail.state", "shopmail.run", "shopmail.web", "shopmail.results"},
    "tasks": SHOPMAIL_LOW | {"shopmail.state", "shopmail.run", "shopmail.results"},
    "flows": SHOPMAIL_LOW | {"shopmail.state", "shopmail.run", "shopmail.results", "tasks"},
    "shopmail.cli": set(),  # the entry point: may import every room (filled below)
    "shopmail.dask_preload": set(),  # the Dask processes' entry point (imports what tasks need)
}
ALLOWED["shopmail.cli"] = set(ALLOWED) - {"shopmail.cli", "shopmail.dask_preload"}
ALLOWED["shopmail.dask_preload"] = set(ALLOWED) - {"shopmail.cli", "shopmail.dask_preload"}


def room_of(module: str) -> str:
    """The room a dotted module lives in."""
    parts = module.split(".")
    if parts[0] == "shopmail":
        if len(parts) == 1 or parts[1] in {
            "db",
            "campaigns",
            "coupon_codes",
            "schedule",
            "redaction",
            "bulk",
            "__init__",
        }:
            return "shopmail.core"
        return "shopmail." + parts[1]
    if parts[0] == "segments" and len(parts) > 1 and parts[1] == "audiences":
        return "segments.audiences"
    return parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def project_imports(path: Path) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for each import of the project's own code."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PACKAGES and _exists(name):
                found.append((name, node.lineno, id(node) in top_level))
    return found


def _exists(module: str) -> bool:
    base = ROOT / module.replace(".", "/")
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def source_files() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def test_every_room_is_known_and_documented():
    for path in source_files():
        assert room_of(module_name(path)) in ALLOWED, path
    for init in (ROOT / "shopmail").rglob("__init__.py"):
        if "migrations" in init.parts:
            continue
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc, (
            f"{init.relative_to(ROOT)} must say what lives there and what it may import"
        )


def test_rooms_import_only_downwards():
    wrong = []
    for path in source_files():
        here = room_of(module_name(path))
        for name, line, _ in project_imports(path):
            there = room_of(name)
            if there != here and there not in ALLOWED[here]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({here}) imports {name} ({there})")
    assert not wrong, "imports against the house rules:\n" + "\n".join(wrong)


def test_no_module_level_import_cycles():
    graph: dict[str, set[str]] = defaultdict(set)
    for path in source_files():
        me = module_name(path)
        for name, _, top in project_imports(path):
            if top and name != me and not me.startswith(name + "."):
                graph[me].add(name if (ROOT / name.replace(".", "/")).with_suffix(".py").exists() else name)
    cycles = _cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(graph):
        if v not in index:
            visit(v)
    return out


def test_the_checker_sees_a_wrong_import(tmp_path):
    """The rule itself can fail: a config module importing shopmail is caught."""
    assert "shopmail.run" not in ALLOWED["shopmail.state"]
    assert room_of("segments.audiences.birthday") == "segments.audiences"
    assert room_of("shopmail.campaigns") == "shopmail.core"
    assert _cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b"]]
