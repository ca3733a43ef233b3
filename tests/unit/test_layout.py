"""The layout holds: packages import only downward, no import circle, no oversized module,
and every config key is read by some code.

Layers, bottom up (README "Layout")::

    cli            fabfile.py's tasks: may import everything below
    components/*.py  Pulumi components and dynamic resources
    lab            the embedded lab
    converge  vcenter  dns
    bundle
    config
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.bundle.render import TEMPLATE_DIRS
from components.config import KEYS

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPONENTS = ROOT / "components"
PULUMI = "pulumi layer"  # the modules directly in components/

ALLOWED: dict[str, set[str]] = {
    "config": set(),
    "bundle": {"config"},
    "converge": {"config", "bundle"},
    "vcenter": {"config", "bundle"},
    "dns": {"config"},
    "lab": {"config", "bundle", "vcenter", "dns"},
    PULUMI: {"config", "bundle", "converge", "vcenter", "dns"},
    "cli": {"config", "bundle", "converge", "vcenter", "dns", "lab"},
}
MAX_LINES = 300
# keys whose feature is not built yet, by name; each must leave this list when it is
PENDING: set[str] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "components"
    if (COMPONENTS / parts[1]).is_dir():
        return parts[1]
    return PULUMI


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in COMPONENTS.rglob("*.py")}


def imports(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """Every project module ``path`` imports, at any depth (function-level imports count:
    they are circles in hiding)."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import sub` imports the submodule; `from pkg import name` the package
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                for a in node.names
            ]
        else:
            continue
        yield from (n for n in names if n == "components" or n.startswith("components."))


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: set(imports(p, known)) - {m} for m, p in known.items()}


def test_each_package_imports_only_downward() -> None:
    wrong = []
    for module, targets in graph().items():
        own = layer(module)
        if own == "components":
            continue
        for target in targets:
            other = layer(target)
            if other != own and other not in ALLOWED[own]:
                wrong.append(f"{module} ({own}) imports {target} ({other})")
    assert not wrong, "\n".join(sorted(wrong))


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                found.append(sorted(scc))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle() -> None:
    # a package's __init__ re-exports its own submodules: that edge alone is no circle, but a
    # submodule importing its package's __init__ while it loads would be
    packages = {m for m, p in modules().items() if p.name == "__init__.py"}
    g = {
        m: {t for t in targets if not (m in packages and t.startswith(f"{m}."))}
        for m, targets in graph().items()
    }
    assert cycles(g) == []


def own_package_imports(path: Path, module: str) -> list[str]:
    """The statements by which ``module`` imports its own package (``from components.lab import
    net`` in components/lab/plan.py): that runs the package's __init__, which imports its
    submodules, so the module loads in the middle of its own package's loading: a circle
    whatever the names. A sibling is imported by its full path (``import components.lab.net as
    labnet``, ``from components.lab.net import LabError``)."""
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    if package == "components":
        return []
    return [
        f"{module}:{node.lineno}: from {node.module} import ..."
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == package
    ] + [
        f"{module}:{node.lineno}: import {alias.name}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name == package and path.name != "__init__.py"
    ]


def test_no_module_imports_its_own_package() -> None:
    found = [line for m, p in modules().items() for line in own_package_imports(p, m)]
    assert not found, "\n".join(found)


def test_the_own_package_check_can_fail(tmp_path: Path) -> None:
    plan = tmp_path / "plan.py"
    plan.write_text("from components.lab import net\nimport components.lab.net as labnet\n")
    assert own_package_imports(plan, "components.lab.plan") == [
        "components.lab.plan:1: from components.lab import ..."
    ]


def test_the_circle_check_can_fail() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_over_the_size_limit() -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for p in COMPONENTS.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_every_config_key_is_read() -> None:
    """A key nothing reads is a promise the product does not keep."""
    readers = [p for p in COMPONENTS.rglob("*.py") if "config" not in p.parts]
    readers += [ROOT / "__main__.py"] + [d / t for d in TEMPLATE_DIRS for t in os.listdir(d)]
    code = "\n".join(p.read_text() for p in readers if p.is_file())
    # keys read through a Settings property that combines them: read when the property is
    derived = {"advert_interval_ms": "advert_seconds"}
    unread = sorted(
        k.full for k in KEYS if f".{k.field}" not in code and f".{derived.get(k.field)}" not in code
    )
    assert unread == sorted(PENDING)


def test_every_node_template_lives_under_node() -> None:
    """One place for what a node gets (README "Layout"): node/files, node/scripts,
    node/cloud-init, and node/legacy (the lab's stand-in for the article's single server, which
    a stack adopts); no template elsewhere in the project."""
    assert all(d.parent == ROOT / "node" and d.is_dir() for d in TEMPLATE_DIRS), TEMPLATE_DIRS
    skip = {".venv", ".lab", ".git", "out"}
    stray = [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.j2")
        if not skip & set(p.relative_to(ROOT).parts)
        and p.parent not in (*TEMPLATE_DIRS, ROOT / "node" / "legacy")
    ]
    assert stray == []
