"""The Python package has no import cycle: a walk over its modules' syntax trees, imports inside
functions included (a lazy import is still a dependency), imports for type checkers only
(``if TYPE_CHECKING:``) left out. import-linter's layer contracts (``pyproject.toml``, run by
``scripts/test``) order the layers; this finds the cycles that they do not see."""

from __future__ import annotations

import ast
from pathlib import Path

import treadle

PACKAGE = Path(treadle.__file__).parent


def modules_of(root: Path) -> dict[str, Path | None]:
    """Every module of the package at ``root``, by name; extension modules (known by their
    stubs) have no source to walk."""
    found: dict[str, Path | None] = {}
    for path in sorted(root.rglob("*.py*")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        if path.suffix == ".py":
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
        elif path.suffix == ".pyi" and not path.with_suffix(".py").exists():
            found.setdefault(".".join(parts), None)
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(tree: ast.AST):
    """Every statement, but those in ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from node.orelse
            continue
        yield node
        yield from _statements(node)


def imports_of(name: str, path: Path, modules: dict[str, Path | None]) -> set[str]:
    """The package's modules that module ``name`` (at ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    imported: set[str] = set()
    for node in _statements(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0]
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                imported.add(submodule if submodule in modules else base)
    return {module for module in imported if module in modules and module != name}


def import_graph(root: Path) -> dict[str, set[str]]:
    modules = modules_of(root)
    return {
        name: imports_of(name, path, modules) if path is not None else set()
        for name, path in modules.items()
    }


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in sorted(graph[module]):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_module_of_treadle_imports_itself_through_others():
    graph = import_graph(PACKAGE)
    assert "treadle.futures.process" in graph and "treadle._treadle" in graph
    assert cycles(graph) == []


def make_package(folder: Path, files: dict[str, str]) -> Path:
    package = folder / "pkg"
    package.mkdir()
    for name, text in files.items():
        (package / name).write_text(text)
    return package


def test_a_cycle_through_a_lazy_import_is_found(tmp_path):
    package = make_package(
        tmp_path,
        {
            "__init__.py": "def __getattr__(name):\n    from pkg import b\n",
            "a.py": "import pkg\n",
            "b.py": "from . import a\n",
            "c.py": "TYPE_CHECKING = False\nif TYPE_CHECKING:\n    from pkg import b\n",
        },
    )
    assert cycles(import_graph(package)) == [["pkg", "pkg.a", "pkg.b"]]


def test_the_extension_is_a_module_not_the_package(tmp_path):
    package = make_package(
        tmp_path,
        {
            "__init__.py": "from pkg import helper\n",
            "_native.pyi": "",
            "helper.py": "from pkg import _native\n",
        },
    )
    graph = import_graph(package)
    assert graph["pkg.helper"] == {"pkg._native"}
    assert cycles(graph) == []
