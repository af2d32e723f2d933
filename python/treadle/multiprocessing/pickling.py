"""Pickling for the process pool, in the caller's thread: protocol 5 with large buffers out of
band (lent to the supervisor, which puts them in shared memory when a worker takes the task),
``__main__``'s functions and classes by reference when the pool's workers find them in their own
main module (``main_module``), cloudpickle for what pickle sends by reference but a worker could
not find (lambdas, closures, what ``__main__`` defined since or under its main guard), and
errors that say which part of an argument or result cannot be pickled.
"""

from __future__ import annotations

import functools
import importlib
import io
import pickle
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from treadle.multiprocessing import main_module, segments, wire
from treadle.multiprocessing.main_module import NOTHING, View

#: Buffers of this many bytes or more travel through shared memory rather than the socket.
SHARED_MEMORY_THRESHOLD = 256 * 1024

#: How a pickle names ``__main__``.
MAIN = b"__main__"
_MAX_DEPTH = 12


def _cloudpickle() -> Any:
    try:
        import cloudpickle  # type: ignore[import-untyped]
    except ImportError:
        return None
    return cloudpickle


def dumps_any(
    value: object,
    buffer_callback: Callable[[pickle.PickleBuffer], bool] | None = None,
    restart: Callable[[], None] = lambda: None,
    main: View = NOTHING,
) -> bytes:
    """Pickles ``value`` by reference when a worker can load it so (``main`` says what the
    worker's ``__main__`` holds), else with cloudpickle."""
    cloudpickle = None
    try:
        data = pickle.dumps(value, protocol=5, buffer_callback=buffer_callback)
        if MAIN not in data:
            return data
        cloudpickle = _cloudpickle()
        if cloudpickle is None:
            return data
    except (pickle.PicklingError, AttributeError, TypeError):
        cloudpickle = _cloudpickle()
        if cloudpickle is None:
            raise
    restart()
    file = io.BytesIO()
    pickler = _pickler(cloudpickle)(file, protocol=5, buffer_callback=buffer_callback)
    pickler.main = main
    pickler.dump(value)
    return file.getvalue()


class _MainModule:
    """Unpickles, in a worker, as the module that holds the shared ``__main__`` namespace."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (importlib.import_module, (wire.MAIN_NAMESPACE_MODULE,))


class _MainNamespace:
    """Unpickles, in a worker, as the namespace of the worker's ``__main__``."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (getattr, (_MainModule(), "namespace"))


MAIN_NAMESPACE = _MainNamespace()


class _Merge:
    """Unpickles, in a worker, as the function that merges the globals a function of
    ``__main__`` carries into the worker's ``__main__``."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (getattr, (_MainModule(), "merge"))

    def __call__(self, captured: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("merged only in a worker")  # pragma: no cover


class _MergedGlobals:
    """The globals a function of ``__main__`` sent by value reads, as the parent has them:
    unpickled in a worker, they are merged into its ``__main__`` (a name the worker's own code
    assigned keeps its value) and give cloudpickle nothing more to add."""

    def __init__(self, captured: dict[str, Any]) -> None:
        self.captured = captured

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Merge(), (self.captured,))


@functools.cache
def _pickler(cloudpickle: Any) -> type:
    """cloudpickle's pickler, but: a function or class of ``__main__`` that the workers find in
    their own main module (``main_module``, as its ``main`` attribute says) goes by reference;
    and a function of ``__main__`` sent by value gets the worker's ``__main__`` namespace as its
    globals, where cloudpickle would give each pickle a namespace of its own: an initializer
    that sets a global with ``global`` and the tasks that read it must see one module, as they
    do in the standard library's workers."""

    class Pickler(cloudpickle.Pickler):  # type: ignore[misc,name-defined]
        main: View = NOTHING

        def reducer_override(self, obj: Any) -> Any:
            if main_module.is_main_definition(obj) and self.main.finds(obj):
                return NotImplemented
            return super().reducer_override(obj)

        def _function_getnewargs(self, func: Any) -> Any:
            newargs = super()._function_getnewargs(func)
            if _of_main(func):
                return (newargs[0], MAIN_NAMESPACE, *newargs[2:])
            return newargs

        def _dynamic_function_reduce(self, func: Any) -> Any:
            reduced = super()._dynamic_function_reduce(func)
            if not _of_main(func):
                return reduced
            make, newargs, (state, slotstate), *rest = reduced
            slotstate = {**slotstate, "__globals__": _MergedGlobals(slotstate["__globals__"])}
            return (make, newargs, (state, slotstate), *rest)

    return Pickler


def _of_main(func: Any) -> bool:
    main = sys.modules.get("__main__")
    return main is not None and func.__globals__ is vars(main)


def dump_task(
    kind: int,
    fn: object,
    args: object,
    kwargs: dict[str, Any],
    threshold: int,
    main: View = NOTHING,
    named: int | None = None,
    table: dict[Any, Any] | None = None,
) -> tuple[bytes, list[memoryview]]:
    """A task's frame payload and its out-of-band buffers (the caller's memory, not copies).
    ``fn`` may be a callable's pickle already (``named``: how often it names ``__main__``, if
    known). ``table``: a dispatch table to pickle with (the reducers a program gave its pool),
    all in band. Raises, naming the culprit, if the callable or an argument cannot be
    pickled."""
    if named is None:
        named = fn.count(MAIN) if isinstance(fn, bytes) else 0
    if table is not None:
        try:
            data = wire.dumps_with(table, (kind, fn, args, kwargs))
        except Exception:
            pass  # what the reducers cannot take goes the usual way
        else:
            if data.count(MAIN) == named:
                return data, []
    if kind == wire.CALL and (
        _has_raw_buffers(args) or (kwargs and _has_raw_buffers(kwargs.values()))  # type: ignore[arg-type]
    ):
        args = tuple(segments.wrap_large(arg, threshold) for arg in args)  # type: ignore[attr-defined]
        kwargs = {k: segments.wrap_large(v, threshold) for k, v in kwargs.items()}
    value = (kind, fn, args, kwargs)
    # The common case in one step: pickle takes it all by reference, with no large buffer (a
    # callable pickled already may name __main__: only the rest matters). Below the shared
    # memory threshold, the pool's may be lower: a payload shorter than it holds no buffer
    # that should have gone out of band.
    try:
        data = pickle.dumps(value, protocol=5, buffer_callback=in_band)
    except Exception:
        pass
    else:
        if data.count(MAIN) == named and (
            threshold >= SHARED_MEMORY_THRESHOLD or len(data) < threshold
        ):
            return data, []

    def pickler(value: object, buffer_callback: Any, restart: Any) -> bytes:
        return dumps_any(value, buffer_callback, restart, main)

    try:
        data, large = segments.dump_out_of_band(value, threshold, pickler)
    except Exception as error:
        raise _task_error(fn, args, kwargs, error) from error
    return data, [buffer.raw() for buffer in large]


def in_band(buffer: pickle.PickleBuffer) -> bool:
    """The first try's ``buffer_callback``: a buffer that may have to go out of band (of
    ``SHARED_MEMORY_THRESHOLD`` bytes or more: a process pool's threshold; a Dask executor's is
    higher) sends the task down the path that collects them, by the pool's threshold."""
    if buffer.raw().nbytes >= SHARED_MEMORY_THRESHOLD:
        raise _OutOfBand
    return True


class _OutOfBand(Exception):
    pass


#: Buffers that pickle keeps in band unless wrapped (``segments.wrap_large``): a tuple, not a
#: union, so that no union object is made per task.
_RAW = (bytes, memoryview)


def _has_raw_buffers(values: Iterable[object]) -> bool:
    for value in values:
        if isinstance(value, _RAW):
            return True
    return False


def function_by_reference(fn: object, main: View = NOTHING) -> bytes | None:
    """``fn`` pickled, if pickle sends it by reference under a module-level name a worker can
    import, or find in its ``__main__`` (so the same bytes stand for it as long as that name is
    bound to it, and, for ``__main__``, as long as ``main`` finds it)."""
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    name = getattr(fn, "__qualname__", None)
    if module is None or not isinstance(name, str) or "." in name:
        return None
    if getattr(module, name, None) is not fn:
        return None
    if main_module.is_main_definition(fn) and not main.finds(fn):
        return None
    try:
        data = pickle.dumps(fn, protocol=5)
    except Exception:
        return None
    if MAIN in data and not main_module.is_main_definition(fn):
        return None
    return data


def dump_function(fn: object, main: View = NOTHING) -> bytes:
    """``fn`` pickled once, for the many tasks of a ``map``."""
    try:
        return dumps_any(fn, main=main)
    except Exception as error:
        raise unpicklable_error("the function", fn, error) from error


def dump_initializer(initializer: object, initargs: tuple[Any, ...], main: View = NOTHING) -> bytes:
    """The pool's initializer and its arguments, pickled once for every worker; an error names
    the initializer or the argument (``initargs[0]._semlock``) that cannot be pickled. Objects
    that travel between processes only by inheritance (``multiprocessing``'s locks, semaphores
    and queues) are such arguments: a ``multiprocessing.Manager()``'s proxies are not."""
    try:
        return dumps_any((initializer, initargs), main=main)
    except Exception as error:
        if _fails(initializer):
            raise unpicklable_error("the initializer", initializer, error) from error
        raise unpicklable_error("initargs", initargs, error) from error


def load(payload: bytes, fds: list[int]) -> Any:
    """Unpickles a payload whose large buffers are in the segment ``fds`` (which it closes)."""
    return pickle.loads(payload, buffers=segments.map_segments(fds))


def _task_error(fn: object, args: Any, kwargs: dict[str, Any], error: Exception) -> Exception:
    parts: list[tuple[str, object]] = [("the function", fn)]
    if isinstance(args, tuple):
        parts += [(f"args[{i}]", arg) for i, arg in enumerate(args)]
    else:
        parts += [("the arguments", args)]
    parts += [(f"kwargs[{k!r}]", v) for k, v in kwargs.items()]
    for label, value in parts:
        if _fails(value):
            return unpicklable_error(label, value, error)
    return error


def unpicklable_error(label: str, value: object, error: Exception) -> Exception:
    """An error of ``error``'s class naming the part of ``value`` (called ``label``) that cannot
    be pickled, by its attribute path: ``cannot pickle args[1].conn.lock (a _thread.lock
    object): ...``."""
    path, culprit, reason = _culprit(value, "", 0) or ("", value, error)
    message = f"cannot pickle {label}{path} ({_describe(culprit)}): {reason}"
    try:
        return type(error)(message)
    except Exception:
        return pickle.PicklingError(message)


def _describe(value: object) -> str:
    kind = type(value)
    module = "" if kind.__module__ == "builtins" else f"{kind.__module__}."
    return f"a {module}{kind.__qualname__} object"


def _fails(value: object) -> Exception | None:
    try:
        dumps_any(value, buffer_callback=lambda _: False)
    except Exception as error:
        return error
    return None


def _culprit(value: object, path: str, depth: int) -> tuple[str, object, Exception] | None:
    """The deepest part of ``value`` that cannot be pickled: (attribute path, part, error)."""
    error = _fails(value)
    if error is None:
        return None
    if depth < _MAX_DEPTH:
        for step, child in _children(value):
            found = _culprit(child, path + step, depth + 1)
            if found is not None:
                return found
    return path, value, error


def _children(value: object) -> Iterator[tuple[str, object]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"[{key!r}]", item
        return
    if isinstance(value, list | tuple | set | frozenset):
        for i, item in enumerate(value):
            yield f"[{i}]", item
        return
    state = getattr(value, "__dict__", None)
    if isinstance(state, dict):
        for name, item in state.items():
            yield f".{name}", item
    for name in getattr(type(value), "__slots__", ()):
        if isinstance(name, str) and hasattr(value, name):
            yield f".{name}", getattr(value, name)
    closure = getattr(value, "__closure__", None)
    code = getattr(value, "__code__", None)
    if closure and code is not None:
        for name, cell in zip(code.co_freevars, closure, strict=False):
            try:
                yield f".<closure {name}>", cell.cell_contents
            except ValueError:
                continue
