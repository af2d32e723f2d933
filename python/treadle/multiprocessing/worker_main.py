"""A worker's ``__main__``.

A forked worker's is the parent's, inherited. A fresh interpreter's is the parent's main script
run again, as ``__mp_main__`` (and seen as ``__main__`` too), as the standard library's spawn start
method does, with the parent's ``sys.argv``; but only once something is looked up in it, so that
a pool whose tasks never use the script's definitions never runs it. While it runs, no process
pool can be started (a script that starts one outside its main guard would start pools without
end). Without a script to run (an interactive parent, ``python -c``), it is an empty module.
What the parent's pickles can expect of it is ``main_module``'s to say.

Functions of the parent's ``__main__`` that travel by value (``pickling``) get this module's
namespace as their globals, and the globals they carry are merged into it by :func:`merge`: a
name takes the parent's value unless the worker's own code assigned it since it started (an
initializer that sets a global with ``global`` keeps its value).

Standard library only: a fresh worker imports it before it knows the parent's ``sys.path``.
"""

from __future__ import annotations

import builtins
import sys
import types
from typing import Any

from treadle.multiprocessing.wire import MAIN_NAMESPACE_MODULE

_MISSING = object()

#: How to run the parent's script (``main_module.View.script()``), for a fresh worker.
_script: dict[str, Any] | None = None
#: None until the script ran (or there is none to run); then True, or what it raised.
_ran: bool | BaseException | None = True
#: The namespace as it was when the worker started (inherited, or the script just run), and the
#: values the parent sent since: a name bound to one of them may take the parent's value.
_original: dict[str, Any] = {}
_given: dict[str, Any] = {}


class ScriptModule(types.ModuleType):
    """The parent's main script, run the first time a name is looked up in it."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        run_script()
        try:
            return self.__dict__[name]
        except KeyError:
            raise AttributeError(
                f"the parent's main script, run again in this worker, has no {name!r} "
                "(defined under its `if __name__ == '__main__':`?)"
            ) from None


def install(script: dict[str, Any] | None) -> None:
    """Gives a fresh worker its ``__main__``: the parent's script, to be run when needed, or an
    empty module."""
    global _script, _ran
    module: types.ModuleType
    if script is None:
        module = types.ModuleType("__mp_main__")
    else:
        module = ScriptModule("__mp_main__")
        sys.argv[:] = script["argv"]
        _script, _ran = script, None
    module.__dict__["__builtins__"] = builtins
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


def inherit() -> None:
    """A forked worker keeps the parent's ``__main__``, as it was when it was forked."""
    _original.update(vars(sys.modules["__main__"]))


def run_script() -> None:
    """Runs the parent's script in ``__main__``, once; raises ``ImportError`` if it failed."""
    global _ran
    if _ran is None:
        control = sys.modules[MAIN_NAMESPACE_MODULE]
        control.loading = True  # type: ignore[attr-defined]
        try:
            _run(vars(sys.modules["__main__"]))
        except BaseException as error:
            _ran = error
        else:
            _ran = True
        finally:
            control.loading = False  # type: ignore[attr-defined]
        _original.update(vars(sys.modules["__main__"]))
    if isinstance(_ran, BaseException):
        where = (_script or {}).get("path") or (_script or {}).get("module")
        raise ImportError(
            f"the parent's main script ({where}) failed when run again in this worker: {_ran!r}"
        ) from _ran


def _run(namespace: dict[str, Any]) -> None:
    script = _script or {}
    if script.get("module"):
        import importlib.util

        spec = importlib.util.find_spec(script["module"])
        if spec is None or spec.loader is None:
            raise ImportError(f"no module named {script['module']!r}")
        code = spec.loader.get_code(script["module"])  # type: ignore[attr-defined]
        namespace.update(
            __file__=spec.origin, __package__=script["module"].rpartition(".")[0], __spec__=spec
        )
    else:
        path = script["path"]
        with open(path, "rb") as file:
            code = compile(file.read(), path, "exec")
        namespace.update(__file__=path, __package__=None, __spec__=None)
    exec(code, namespace)


def namespace() -> dict[str, Any]:
    """The namespace of this worker's ``__main__`` (its script run, if it can be)."""
    try:
        run_script()
    except ImportError:
        pass  # a function sent by value needs only what it carries
    return vars(sys.modules["__main__"])


def merge(captured: dict[str, Any]) -> dict[str, Any]:
    """Merges the globals a function sent by value carries into ``__main__``; returns an empty
    dict, for cloudpickle to add to the function's globals."""
    target = namespace()
    for name, value in captured.items():
        current = target.get(name, _MISSING)
        if (
            current is _MISSING
            or current is _original.get(name, _MISSING)
            or current is _given.get(name, _MISSING)
        ):
            target[name] = _given[name] = value
    return {}


def _control_attribute(name: str) -> Any:
    if name == "namespace":
        return namespace()
    raise AttributeError(name)


def _register() -> None:
    """The module (in ``sys.modules`` only) the parent's pickles name to reach this one's
    functions: ``namespace`` and ``merge``; ``loading`` is true while the script runs."""
    control = types.ModuleType(MAIN_NAMESPACE_MODULE)
    control.__getattr__ = _control_attribute  # type: ignore[method-assign]
    control.merge = merge  # type: ignore[attr-defined]
    control.loading = False  # type: ignore[attr-defined]
    sys.modules.setdefault(MAIN_NAMESPACE_MODULE, control)


_register()
