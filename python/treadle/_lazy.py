"""Names a package exposes before it imports them (PEP 562): its ``__getattr__`` imports the
module that holds a name on first use and binds the name, so that later lookups are plain."""

from __future__ import annotations

from types import ModuleType


def bind(namespace: dict[str, object], name: str, module: ModuleType) -> object:
    """``module``'s ``name`` (``module`` itself when it is the package's submodule ``name``),
    bound in the package's ``namespace``."""
    package = namespace["__name__"]
    value = module if module.__name__ == f"{package}.{name}" else getattr(module, name)
    namespace[name] = value
    return value


def listing(namespace: dict[str, object], public: list[str]) -> list[str]:
    """A package's ``dir()``: what it has bound, and the names it exposes lazily."""
    return sorted({*namespace, *public})
