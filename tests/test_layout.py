"""The package's floors: commands (`cli`, `__main__`) over tasks (`hms_infer.tasks`) over the library. No import cycle
(imports inside functions and type-only `if TYPE_CHECKING:` imports count: an arrow is an arrow), no library module
imports a task, and only the command line prints."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hms_infer"
TOP = {"hms_infer", "hms_infer.cli", "hms_infer.__main__"}  # above the tasks: the package's API and the commands


def _module(path: Path) -> str:
    return ".".join(("hms_infer", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")


def _imports(path: Path) -> set[str]:
    """The hms_infer modules `path` imports, anywhere in it: in functions and `if TYPE_CHECKING:` blocks too."""
    tree = ast.parse(path.read_text())
    here = _module(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            names = [f"{target}.{a.name}" for a in node.names]
            found |= {n for n in names if (PACKAGE.parent / (n.replace(".", "/") + ".py")).is_file()
                      or (PACKAGE.parent / n.replace(".", "/")).is_dir()} or {target}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {m for m in found if m == "hms_infer" or m.startswith("hms_infer.")}


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    return {m: {i for i in _imports(p) if i in modules and i != m} for m, p in modules.items()}


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if n in TOP and m in TOP:
                continue
            assert state.get(n) != 1, "import cycle: " + " -> ".join(path[path.index(n):] + [n])
            if n not in state:
                visit(n)
        path.pop()
        state[m] = 2
    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_type_only_imports_are_arrows():
    """`timeline` imports `ensemble` only under `if TYPE_CHECKING:` (for its type hints): still an arrow, so
    `ensemble` may import `timeline` nowhere (it did, inside `Ensemble.timeline`, hiding a cycle)."""
    source = (PACKAGE / "timeline.py").read_text()
    assert "if TYPE_CHECKING:\n    from .ensemble import Ensemble" in source
    graph = _graph()
    assert "hms_infer.ensemble" in graph["hms_infer.timeline"]
    assert "hms_infer.timeline" not in graph["hms_infer.ensemble"]


def test_the_library_imports_no_task():
    graph = _graph()
    library = [m for m in graph if m not in TOP and not m.startswith("hms_infer.tasks")]
    assert len(library) > 20
    for m in library:
        assert not [n for n in graph[m] if n.startswith("hms_infer.tasks")], m


def test_only_the_command_line_prints():
    printing = sorted(_module(p) for p in PACKAGE.rglob("*.py")
                      if any(isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"
                             for n in ast.walk(ast.parse(p.read_text()))))
    assert printing == ["hms_infer.cli"]
