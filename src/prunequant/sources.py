"""Which library files a workflow script depends on.

Snakemake's code trigger only sees the script file itself, not the modules it
imports. Rules list these files as inputs so that editing a library module
reruns exactly the stages whose scripts import it, directly or indirectly.
"""

from __future__ import annotations

import ast
from pathlib import Path

__all__ = ["library_sources"]

PACKAGE = "prunequant"


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
            # "from prunequant import data" imports the submodule prunequant.data
            modules.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in modules if name == PACKAGE or name.startswith(PACKAGE + ".")}


def _module_file(name: str, package_dir: Path) -> Path | None:
    parts = name.split(".")[1:]
    if not parts:
        return package_dir / "__init__.py"
    relative = Path(*parts)
    for candidate in (package_dir / relative.with_suffix(".py"), package_dir / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def library_sources(script: str | Path, package_dir: str | Path) -> list[str]:
    """Sorted paths of every ``prunequant`` module that ``script`` imports, transitively.

    The package's ``__init__.py`` is always included, since importing any
    submodule runs it.
    """
    package_dir = Path(package_dir)
    found: set[Path] = {package_dir / "__init__.py"}
    pending = [Path(script)]
    seen: set[Path] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_modules(path):
            module_file = _module_file(name, package_dir)
            if module_file is not None and module_file not in found:
                found.add(module_file)
                pending.append(module_file)
    return sorted(str(path) for path in found)
