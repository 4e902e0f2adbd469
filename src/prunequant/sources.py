"""Which library files a workflow script depends on, and their content digests.

Snakemake's code trigger only sees the script file itself, not the modules it
imports. Rules pass the digests of these files as a param, so that editing a
library module reruns exactly the stages whose scripts import it, directly or
indirectly. As a param rather than as input files they cost the DAG nothing:
a few thousand code inputs made every `snakemake` call match each one against
every rule's outputs.
"""

from __future__ import annotations

import hashlib
import os
import re
from functools import cache
from pathlib import Path

__all__ = ["library_digests", "library_sources", "script_imports"]

PACKAGE = "prunequant"


# Import statements, read off the text rather than an AST: every `snakemake` call plans with this
# at start-up, and parsing each module was most of what a no-op `snakemake -n` spent in this
# workflow. A match inside a docstring adds a dependency that does not exist, which can only
# rerun a stage more often, never less.
_FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", re.MULTILINE)
_IMPORT = re.compile(r"^[ \t]*import[ \t]+([^\n]*)", re.MULTILINE)


def _names(text: str) -> list[str]:
    """``a as b, c`` (or a parenthesised, commented, multi-line list) → ["a", "c"]."""
    lines = [line.split("#", 1)[0] for line in text.strip("()").splitlines()]
    items = " ".join(lines).replace("\\", " ").split(",")
    return [item.split(" as ")[0].strip() for item in items if item.strip() and item.strip() != "*"]


def _absolute(level: int, module: str, module_name: str | None, is_package: bool) -> str | None:
    """The absolute module a ``from ... import`` names, resolving ``level`` leading dots."""
    if level == 0:
        return module
    if module_name is None:
        return None  # a relative import in a script outside the package
    parts = module_name.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


@cache  # the rules share most modules: each file is read once per process
def _imported_modules(path: Path, module_name: str | None = None) -> frozenset[str]:
    text = path.read_text()
    modules: set[str] = set()
    for match in _IMPORT.finditer(text):
        modules.update(_names(match[1].split(";")[0]))
    for dots, module, names in _FROM_IMPORT.findall(text):
        absolute = _absolute(len(dots), module, module_name, path.name == "__init__.py")
        if absolute:
            modules.add(absolute)
            # "from prunequant import data" imports the submodule prunequant.data
            modules.update(f"{absolute}.{name}" for name in _names(names.split(";")[0]))
    # Importing a.b.c runs a/__init__ and a/b/__init__ first: the parent packages count too.
    parents = {".".join(name.split(".")[:end]) for name in modules for end in range(1, name.count(".") + 1)}
    return frozenset(name for name in modules | parents if name == PACKAGE or name.startswith(PACKAGE + "."))


def script_imports(script: str | Path, package_dir: str | Path) -> list[str]:
    """Sorted names of the ``prunequant`` modules ``script`` imports itself, parents included."""
    package_dir = Path(package_dir)
    names = _imported_modules(Path(script))
    return sorted(name for name in names if _module_file(name, package_dir) is not None)


@cache
def _module_name(path: Path, package_dir: Path) -> str | None:
    try:
        relative = path.relative_to(package_dir).with_suffix("")
    except ValueError:
        return None
    parts = [part for part in relative.parts if part != "__init__"]
    return ".".join([PACKAGE, *parts])


@cache
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
    return list(_library_sources(Path(script), Path(package_dir)))


@cache
def _library_sources(script: Path, package_dir: Path) -> tuple[str, ...]:
    found: set[Path] = {package_dir / "__init__.py"}
    pending = [Path(script)]
    seen: set[Path] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_modules(path, _module_name(path, package_dir)):
            module_file = _module_file(name, package_dir)
            if module_file is not None and module_file not in found:
                found.add(module_file)
                pending.append(module_file)
    return tuple(sorted(str(path) for path in found))


def library_digests(script: str | Path, package_dir: str | Path) -> dict[str, str]:
    """Module path (``prunequant/...``, relative, so a moved project matches) → SHA-256 prefix of
    its bytes, for every module :func:`library_sources` finds for ``script``."""
    package_dir = Path(package_dir)
    return {
        _relative_name(path, package_dir.parent): _digest(path)
        for path in _library_sources(Path(script), package_dir)
    }


@cache
def _relative_name(path: str, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


# Every rule's params hash the modules its script imports, and the rules share most of them:
# each file is hashed once per process, again only if its size or modification time changes.
_digests: dict[str, tuple[tuple[int, int], str]] = {}


def _digest(path: str) -> str:
    stat = os.stat(path)
    version = (stat.st_mtime_ns, stat.st_size)
    known = _digests.get(path)
    if known is None or known[0] != version:
        with open(path, "rb") as file:
            known = _digests[path] = (version, hashlib.sha256(file.read()).hexdigest()[:16])
    return known[1]
