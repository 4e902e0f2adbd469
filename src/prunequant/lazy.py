"""Packages whose public names load on first use.

A package that imported all its modules in ``__init__`` would make every job that needs one
module depend on (and pay the imports of) all of them; the workflow reruns a job when a module
it depends on changes, so the dependency must be the module actually used. The workflow's code
digests (:mod:`prunequant.workflow.code_digests`) read the exports off the package's code without
importing it: pass them as a dict literal, or as a module-level name bound to one.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], object], Callable[[], list]]:
    """``__getattr__`` and ``__dir__`` for ``package``.

    Each name in ``exports`` (name → the module defining it) is imported on first use.
    """

    def get(name: str) -> object:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(exports[name]), name)

    def names() -> list[str]:
        return sorted(exports)

    return get, names
