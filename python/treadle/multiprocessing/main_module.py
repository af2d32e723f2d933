"""What a worker's ``__main__`` holds, as the parent sees it: whether a function or class of the
parent's main module reaches a worker by reference (the worker finds the same definition under
the same name, with the same globals) or must travel by value.

A worker's main module is one of:

- Inherited, for a forked worker: the fork server's copy of the parent's module, as it was when
  the server was forked (or, for a worker forked from the caller, as it was when the pool was
  made). :class:`Inherited` keeps a snapshot of the namespace from that moment. An object is
  found if its name still stands for it and every global of the main module its code reads
  (through the main module's functions it calls, too) still stands for what it stood for then:
  a global rebound since would be stale in the worker, so such a function travels by value.
- The main script run again, as ``__mp_main__`` (a fresh interpreter, as the standard library's
  spawn start method does; the worker runs it the first time it needs it). :class:`Script`
  knows from the script's syntax tree which names it binds outside its
  ``if __name__ == "__main__":`` blocks. An object is found if its name is bound there once, by
  its very definition, and is not bound again under the guard, and so is every global its code
  reads.
- Nothing to rely on (an interactive session, ``python -c``, a script with no main guard, whose
  whole body would run again in the worker): everything of ``__main__`` travels by value, as
  before.

A function or class that is found is pickled by reference, so the worker uses its own
definition and its own globals: a large module-level table is not sent with every task, a
module-level lock is the worker's, and an exception or a dataclass defined in the script comes
back as the parent's own class.
"""

from __future__ import annotations

import ast
import functools
import sys
import weakref
from types import CodeType, FunctionType
from typing import Any

_MISSING = object()
#: What :meth:`View.bindings` gives for a name not bound.
MISSING = _MISSING
#: How many of the main module's functions deep a function's globals are followed.
_MAX_CALL_DEPTH = 8


def is_main_definition(value: object) -> bool:
    """Whether ``value`` is a function or class defined in the parent's ``__main__``."""
    return (
        isinstance(value, FunctionType | type) and getattr(value, "__module__", None) == "__main__"
    )


class View:
    """What the workers of one pool find in their ``__main__``: nothing, by default."""

    def finds(self, value: Any) -> bool:
        return False

    def bindings(self, value: Any) -> dict[str, Any] | None:
        """If :meth:`finds` holds for ``value``, a top-level function or class: the names of the
        main module that answer rests on, each with what it is bound to now (``MISSING`` for a
        name not bound), so that it holds as long as they stay so bound; else None."""
        main = _main_namespace()
        path = _path(value)
        if main is None or path is None or len(path) != 1 or not self.finds(value):
            return None
        names = {path[0]}
        if isinstance(value, FunctionType):
            names |= self._globals_relied_on(value)
        return {name: main.get(name, MISSING) for name in names}

    def _globals_relied_on(self, function: FunctionType) -> set[str] | frozenset[str]:
        """The globals ``function`` reads whose bindings :meth:`finds` depends on."""
        return frozenset()

    def script(self) -> dict[str, Any] | None:
        """What a fresh worker needs to run the main script (its path or module name and the
        parent's ``sys.argv``), if it can be run again."""
        return _script_to_run()


NOTHING = View()


class _Snapshot:
    """A namespace's bindings at a moment, without keeping their values alive where a weak
    reference will do: a value dropped since is bound to no name now, so it is never taken for
    the value a name stands for (which is all a snapshot is asked). A value that cannot be
    referred to weakly (a list, a dict, an int) is held."""

    __slots__ = ("_refs",)

    def __init__(self, namespace: dict[str, Any]) -> None:
        refs: dict[str, Any] = {}
        for name, value in namespace.items():
            try:
                refs[name] = weakref.ref(value)
            except TypeError:
                refs[name] = (value,)
        self._refs = refs

    def get(self, name: str, default: Any = None) -> Any:
        ref = self._refs.get(name)
        if ref is None:
            return default
        if type(ref) is tuple:
            return ref[0]
        value = ref()
        return _GONE if value is None else value


#: What a snapshot gives for a value dropped since: the same as nothing bound now.
_GONE = object()


class Inherited(View):
    """A forked worker's ``__main__``: the parent's, as ``snapshot`` holds it."""

    def __init__(self, namespace: dict[str, Any]) -> None:
        self.snapshot = _Snapshot(namespace)

    def finds(self, value: Any) -> bool:
        main = _main_namespace()
        path = _path(value)
        if path is None or main is None:
            return False
        top = self.snapshot.get(path[0], _MISSING)
        if top is _MISSING or main.get(path[0], _MISSING) is not top:
            return False
        if _resolve(top, path[1:]) is not value:
            return False
        if not isinstance(value, FunctionType):
            return True
        snapshot = self.snapshot
        return all(
            main.get(name, _MISSING) is snapshot.get(name, _MISSING)
            for name in _globals_read(value)
        )

    def _globals_relied_on(self, function: FunctionType) -> set[str] | frozenset[str]:
        # Found: each is bound as in the snapshot.
        return _globals_read(function)


class Script(View):
    """A fresh worker's ``__main__``: the main script, run again. ``outside`` maps each name the
    script binds outside its main guard to the lines of those bindings (a definition's line and
    its decorators'); ``rebound`` holds the names bound more than once, or under the guard."""

    def __init__(self, outside: dict[str, list[set[int]]], rebound: set[str]) -> None:
        self.outside = outside
        self.rebound = rebound

    def finds(self, value: Any) -> bool:
        main = _main_namespace()
        path = _path(value)
        if path is None or main is None or not self._stable(path[0]):
            return False
        top = main.get(path[0], _MISSING)
        if _resolve(top, path[1:]) is not value:
            return False
        if not isinstance(value, FunctionType):
            return True
        if len(path) == 1 and value.__code__.co_firstlineno not in self.outside[path[0]][0]:
            return False  # the name is bound by another definition than this one
        return all(self._stable(name) for name in _globals_read(value) if name in main)

    def _globals_relied_on(self, function: FunctionType) -> set[str] | frozenset[str]:
        # Found: each it reads that the script may rebind is unbound (stable ones never change).
        return {name for name in _globals_read(function) if not self._stable(name)}

    def _stable(self, name: str) -> bool:
        return name in self.outside and name not in self.rebound


def inherited_now() -> Inherited:
    """The view of workers forked from the caller now."""
    return Inherited(_main_namespace() or {})


_at_server_fork: Inherited | None = None


def remember_server_fork() -> Inherited | None:
    """Called just before the fork server is forked: its workers' ``__main__`` is this one. The
    view it replaces, for :func:`forget_server_fork`."""
    global _at_server_fork
    previous, _at_server_fork = _at_server_fork, inherited_now()
    return previous


def forget_server_fork(previous: Inherited | None) -> None:
    """For a server let go of at once: the view of the one before it is the view again."""
    global _at_server_fork
    _at_server_fork = previous


def at_server_fork() -> View:
    """The view of the fork server's workers."""
    return _at_server_fork or NOTHING


def fresh() -> View:
    """The view of fresh interpreters: the main script run again, when it can be."""
    source = _main_source()
    if source is None:
        return NOTHING
    analysed = _analyse(*source)
    if analysed is None:
        return NOTHING
    return Script(*analysed)


# -- the main module ---------------------------------------------------------------------------


def _main_namespace() -> dict[str, Any] | None:
    main = sys.modules.get("__main__")
    return None if main is None else vars(main)


def _path(value: Any) -> list[str] | None:
    """``value``'s qualified name as a path from the module, if it has one."""
    qualname = getattr(value, "__qualname__", None)
    if not isinstance(qualname, str) or "<" in qualname:
        return None  # a lambda, or defined inside a function
    return qualname.split(".")


def _resolve(top: Any, rest: list[str]) -> Any:
    for name in rest:
        top = getattr(top, name, _MISSING)
    return top


_globals_cache: weakref.WeakKeyDictionary[FunctionType, frozenset[str]] = (
    weakref.WeakKeyDictionary()
)


def _globals_read(function: FunctionType) -> frozenset[str]:
    """The names ``function`` may read as globals, and those the main module's functions it
    reads may read, followed a few calls deep (a superset: attribute names are among them)."""
    found = _globals_cache.get(function)
    if found is None:
        names: set[str] = set()
        _gather(function, names, set(), 0)
        found = _globals_cache[function] = frozenset(names)
    return found


def _gather(function: FunctionType, names: set[str], seen: set[int], depth: int) -> None:
    seen.add(id(function))
    own = _code_names(function.__code__)
    names |= own
    if depth >= _MAX_CALL_DEPTH:
        return
    namespace = function.__globals__
    for name in own:
        called = namespace.get(name)
        if (
            isinstance(called, FunctionType)
            and called.__globals__ is namespace
            and id(called) not in seen
        ):
            _gather(called, names, seen, depth + 1)


@functools.lru_cache(maxsize=4096)
def _code_names(code: CodeType) -> frozenset[str]:
    names = set(code.co_names)
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            names |= _code_names(constant)
    return frozenset(names)


def _script_to_run() -> dict[str, Any] | None:
    """How a fresh worker runs the parent's main script, as the standard library's spawn start
    method does: by module name (``python -m``) or by path. None when there is none to run (an
    interactive session, ``python -c``, a package's ``__main__``) or it has no main guard."""
    if _main_source() is None:
        return None
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if name is not None:
        return {"module": name, "path": None, "argv": list(sys.argv)}
    return {"module": None, "path": main.__file__, "argv": list(sys.argv)}


def _main_source() -> tuple[str, str] | None:
    """The main script's path and text, if it is a script (or a module run with ``-m``) that a
    worker can run again: it has a main guard and is not a package's ``__main__``."""
    main = sys.modules.get("__main__")
    if main is None:
        return None
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if name is not None and (name == "__main__" or name.endswith(".__main__")):
        return None
    path = getattr(spec, "origin", None) if name is not None else getattr(main, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return None
    return _read(path)


@functools.lru_cache(maxsize=4)
def _read(path: str) -> tuple[str, str] | None:
    try:
        with open(path, "rb") as file:
            return path, file.read().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


@functools.lru_cache(maxsize=4)
def _analyse(path: str, text: str) -> tuple[dict[str, list[set[int]]], set[str]] | None:
    """The names the script binds outside its main guard (each binding's lines) and those bound
    more than once or under the guard; None if it cannot be parsed or has no main guard (run
    again, its whole body would run in every worker)."""
    try:
        tree = ast.parse(text, path)
    except (SyntaxError, ValueError):
        return None
    outside: dict[str, list[set[int]]] = {}
    guarded: set[str] = set()
    has_guard = False
    for statement in tree.body:
        if _is_main_guard(statement):
            has_guard = True
            for inner in statement.body:  # type: ignore[attr-defined]
                guarded.update(name for name, _ in _bindings(inner))
            continue
        for name, lines in _bindings(statement):
            outside.setdefault(name, []).append(lines)
    if not has_guard:
        return None
    rebound = guarded | {name for name, bindings in outside.items() if len(bindings) > 1}
    return outside, rebound


def _is_main_guard(statement: ast.stmt) -> bool:
    if not isinstance(statement, ast.If):
        return False
    test = statement.test
    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s.id for s in sides if isinstance(s, ast.Name)]
    texts = [s.value for s in sides if isinstance(s, ast.Constant)]
    return names == ["__name__"] and texts == ["__main__"]


def _bindings(statement: ast.stmt) -> list[tuple[str, set[int]]]:
    """The module-level names ``statement`` binds, each with its lines (a definition's and its
    decorators'); what functions and classes bind inside themselves is their own."""
    found: list[tuple[str, set[int]]] = []
    if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        lines = {statement.lineno, *(d.lineno for d in statement.decorator_list)}
        found.append((statement.name, lines))
        return found
    if isinstance(statement, ast.Import | ast.ImportFrom):
        for alias in statement.names:
            name = alias.asname or alias.name.split(".")[0]
            found.append((name, {statement.lineno}))
        return found
    for node in _walk_module_level(statement):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            found.append((node.id, {node.lineno}))
        elif isinstance(node, ast.ExceptHandler) and node.name:
            found.append((node.name, {node.lineno}))
        elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
            found.append((node.name, {node.lineno}))
        elif isinstance(node, ast.MatchMapping) and node.rest:
            found.append((node.rest, {node.lineno}))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.append((node.name, {node.lineno, *(d.lineno for d in node.decorator_list)}))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                found.append((alias.asname or alias.name.split(".")[0], {node.lineno}))
    return found


def _walk_module_level(node: ast.AST):  # type: ignore[no-untyped-def]
    """The nodes of ``node`` that run in the module's scope: not inside a function, a class
    body, a lambda or a comprehension (which have scopes of their own)."""
    scoped = (
        ast.FunctionDef,
        ast.AsyncFunctionDef,
        ast.ClassDef,
        ast.Lambda,
        ast.ListComp,
        ast.SetComp,
        ast.DictComp,
        ast.GeneratorExp,
    )
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        if current is not node and isinstance(current, scoped):
            continue
        stack.extend(ast.iter_child_nodes(current))
