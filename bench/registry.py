"""A small generic registry: unique names, "did you mean" for unknown ones.

Methods are discovered through the ``bench.methods`` entry-point group, so built-in
and third-party plugins register in exactly the same way (one line in a
``pyproject.toml``). Objects are loaded lazily: listing names imports nothing heavy.
"""

from __future__ import annotations

import difflib
from importlib.metadata import entry_points
from typing import Callable, Generic, Iterator, TypeVar

from bench.errors import BenchError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._loaders: dict[str, Callable[[], T]] = {}

    def add(self, name: str, loader: Callable[[], T]) -> None:
        if name in self._loaders:
            raise BenchError(f"duplicate {self.kind} name '{name}'")
        self._loaders[name] = loader

    def names(self) -> list[str]:
        return sorted(self._loaders)

    def __contains__(self, name: str) -> bool:
        return name in self._loaders

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def get(self, name: str) -> T:
        if name not in self._loaders:
            close = difflib.get_close_matches(name, self._loaders, n=3, cutoff=0.5)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            known = ", ".join(self.names())
            raise BenchError(f"unknown {self.kind} '{name}'{hint}; known: {known}")
        return self._loaders[name]()


def entry_point_registry(group: str, kind: str) -> Registry:
    registry: Registry = Registry(kind)
    for entry_point in entry_points(group=group):
        registry.add(entry_point.name, entry_point.load)
    return registry


_methods: Registry | None = None


def methods() -> Registry:
    """The method registry, built once from the ``bench.methods`` entry points."""
    global _methods
    if _methods is None:
        _methods = entry_point_registry("bench.methods", "method")
    return _methods
