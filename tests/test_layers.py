"""The Rust crates' modules import each other in layers: no cycle between the modules of a crate,
none between the files of a module folder, and the bindings' runtime imports nothing above it.

Read from the sources (``use crate::...``, ``use super::...`` and inline ``crate::`` paths), so
that a new import that closes a cycle fails here, with the cycle named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

CRATES = Path(__file__).resolve().parents[1] / "crates"
NAMES = ["treadle-core", "treadle-os", "treadle-py"]

_USE = re.compile(r"\buse\s+([A-Za-z_][^;]*);", re.S)
_PATH = re.compile(r"\b((?:crate|super)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def _modules(src: Path) -> dict[tuple[str, ...], Path]:
    """Module path -> file, for every module file of a crate (``lib.rs`` is the root, ``()``)."""
    found: dict[tuple[str, ...], Path] = {}
    for file in src.rglob("*.rs"):
        parts = file.relative_to(src).with_suffix("").parts
        if parts[-1] == "tests" or "tests" in parts[:-1]:
            continue  # unit tests may reach anywhere
        if parts[-1] in ("lib", "mod"):
            parts = parts[:-1]
        found[parts] = file
    return found


def _expand(tree: str) -> list[str]:
    """The paths of a use tree: ``a::{b, c::{d}}`` -> ``a::b``, ``a::c::d``."""
    tree = re.sub(r"\s+", "", tree)
    if "{" not in tree:
        return [tree.split(" as ")[0]]
    head, _, rest = tree.partition("{")
    body = rest[: rest.rindex("}")]
    items, depth, start = [], 0, 0
    for i, char in enumerate(body):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "," and depth == 0:
            items.append(body[start:i])
            start = i + 1
    items.append(body[start:])
    return [path for item in items if item for path in _expand(head + item)]


Module = tuple[str, ...]


def _imports(module: Module, file: Path, known: set[Module]) -> set[Module]:
    """The modules `module` refers to, each the deepest known module a path names."""
    text = "\n".join(line.split("//")[0] for line in file.read_text().splitlines())
    paths = [path for tree in _USE.findall(text) for path in _expand(tree)]
    paths += _PATH.findall(_USE.sub("", text))
    targets = set()
    for path in paths:
        parts = path.split("::")
        if parts[0] == "crate":
            base: tuple[str, ...] = ()
            parts = parts[1:]
        elif parts[0] in ("super", "self"):
            base = module
            while parts and parts[0] in ("super", "self"):
                base = base[:-1] if parts[0] == "super" else base
                parts = parts[1:]
        elif (*module, parts[0]) in known:
            base = module  # a child module, named from its parent
        else:
            continue  # another crate
        target = base
        for part in parts:
            if (*target, part) not in known:
                break
            target = (*target, part)
        if target != module and target:
            targets.add(target)
    return targets


def _graph(crate: str) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    modules = _modules(CRATES / crate / "src")
    known = set(modules)
    return {module: _imports(module, file, known) for module, file in modules.items() if module}


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.mark.parametrize("crate", NAMES)
def test_top_level_modules_form_no_cycle(crate: str) -> None:
    edges: dict[str, set[str]] = {}
    for module, targets in _graph(crate).items():
        edges.setdefault(module[0], set()).update(t[0] for t in targets if t[0] != module[0])
    assert _cycle(edges) is None, " -> ".join(_cycle(edges) or [])


@pytest.mark.parametrize("crate", NAMES)
def test_files_of_a_module_folder_form_no_cycle(crate: str) -> None:
    graph = _graph(crate)
    folders = {module[:-1] for module in graph if len(module) > 1}
    for folder in folders:
        edges: dict[str, set[str]] = {}
        for module, targets in graph.items():
            if module == folder or module[:-1] == folder:
                name = "::".join(module)
                inside = {t[: len(folder) + 1] for t in targets if t[: len(folder)] == folder}
                edges[name] = {"::".join(t) for t in inside if t != module}
        assert _cycle(edges) is None, " -> ".join(_cycle(edges) or [])


def test_the_bindings_runtime_imports_nothing_above_it() -> None:
    for module, targets in _graph("treadle-py").items():
        if module[0] == "runtime":
            outside = sorted("::".join(t) for t in targets if t[0] != "runtime")
            assert not outside, f"{'::'.join(module)} imports {outside}"


def test_the_reader_sees_imports() -> None:
    graph = _graph("treadle-py")
    assert ("runtime", "tracking") in graph[("runtime", "wait")]
    assert ("runtime", "wait") in graph[("pool",)]
    assert ("pool", "shared") in graph[("pool", "worker")]


def test_a_cycle_is_found_and_named() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
