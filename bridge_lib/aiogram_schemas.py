"""Build aiogram's pydantic schemas on first use instead of at ``import aiogram``.

``import aiogram`` builds a schema for the whole Bot API (~1,000 types and methods, ~105 MB and
1.5 s per process) although a service validates a handful (aiogram issue #1513). ``install()``
hooks ``aiogram.types.base`` and ``aiogram.methods.base``: the rebuild loop at the end of
``aiogram.types`` only records its namespace, and each class is built, with that namespace, when
first validated. The same schemas, built later; with aiogram already imported, nothing changes.
``tests/test_aiogram_schemas.py`` builds every type and method this way.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from types import ModuleType
from typing import Any

# Filled by aiogram.types' rebuild loop: every Telegram type by name, plus the typing helpers.
_TYPES_NAMESPACE: dict[str, Any] = {}
# Parametrised generics built so far (``Response[Message]``...), kept for good: pydantic caches
# them weakly and aiogram asks anew on every call, so a freed one was built again, blocking the loop.
_BUILT_GENERICS: set[Any] = set()


def _deferred_model_rebuild(
    cls: Any,
    *,
    force: bool = False,
    raise_errors: bool = True,
    _parent_namespace_depth: int = 2,
    _types_namespace: Any = None,
) -> bool | None:
    if _types_namespace is not None and not force and not cls.__pydantic_complete__:
        _TYPES_NAMESPACE.update(_types_namespace)
        return None
    if _types_namespace is None and _TYPES_NAMESPACE:
        _types_namespace = _TYPES_NAMESPACE
    from pydantic import BaseModel

    for model in _models_in(getattr(cls, "__pydantic_generic_metadata__", {}).get("args", ())):
        # Built on its own first, Message is reused by Response[Message], Response[list[Message]]...
        # instead of each embedding its own copy of its large schema.
        if not model.__pydantic_complete__:
            model.model_rebuild()

    rebuilt: bool | None = BaseModel.model_rebuild.__func__(  # type: ignore[attr-defined]
        cls,
        force=force,
        raise_errors=raise_errors,
        # One frame deeper than a direct call, for a namespace taken from the caller's frame.
        _parent_namespace_depth=_parent_namespace_depth + 1,
        _types_namespace=_types_namespace,
    )
    if getattr(cls, "__pydantic_generic_metadata__", {}).get("args"):
        _BUILT_GENERICS.add(cls)
    return rebuilt


def _models_in(annotations: Sequence[Any]) -> Iterator[Any]:
    from pydantic import BaseModel

    for annotation in annotations:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield annotation
        yield from _models_in(typing.get_args(annotation))


def _defer_types(module: ModuleType) -> None:
    telegram_object = getattr(module, "TelegramObject", None)
    if telegram_object is not None and telegram_object.model_config.get("defer_build"):
        telegram_object.model_rebuild = classmethod(_deferred_model_rebuild)


def _defer_methods(module: ModuleType) -> None:
    # Subclasses are created after this runs, so they inherit both the config and the method.
    for name in ("TelegramMethod", "Response"):
        model = getattr(module, name, None)
        if model is not None:
            model.model_config["defer_build"] = True
            model.model_rebuild = classmethod(_deferred_model_rebuild)


_AFTER_EXEC: dict[str, Callable[[ModuleType], None]] = {
    "aiogram.types.base": _defer_types,
    "aiogram.methods.base": _defer_methods,
}


class _PatchAfterExec(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader, patch: Callable[[ModuleType], None]) -> None:
        self._loader = loader
        self._patch = patch

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._loader.exec_module(module)
        self._patch(module)


class _AiogramBaseFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        patch = _AFTER_EXEC.get(fullname)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None or not isinstance(spec.loader, importlib.abc.Loader):
            return spec
        spec.loader = _PatchAfterExec(spec.loader, patch)
        return spec


def install() -> None:
    """Defer aiogram's schema building; a no-op when aiogram is already imported or it is installed."""
    if "aiogram" in sys.modules or any(isinstance(finder, _AiogramBaseFinder) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _AiogramBaseFinder())
