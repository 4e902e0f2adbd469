"""Digests of the code each workflow script runs: the ``code`` param of every rule.

Snakemake's own code trigger sees a ``script:`` rule's script file, by its modification time, and
not the modules the script imports. So each rule passes, as its ``code`` param, a digest of its
script and of every ``prunequant`` module the script imports, directly or not: editing a module
reruns exactly the stages that run it. As a param rather than as input files they cost the DAG
nothing, and keyed by relative path (``prunequant/engine.py``) a moved project plans nothing new.

A digest is of what runs, not of the text: of the module's syntax tree without its docstrings
(and any other statement that is only a string). Comments, blank lines and layout never reach the
tree, so editing them or a docstring reruns nothing, while any change to the code does. The tree
is Python's own (``ast.dump``): a new Python minor version may rerun everything once.

The imports are read off the same tree, wherever they are (inside functions too). A package whose
``__init__`` exports names lazily through :func:`prunequant.lazy.lazy_exports` is seen through:
``from prunequant.prune import prune_structured`` depends on the module that defines
``prune_structured``, and importing the package as a namespace depends on all that it exports.

Every ``snakemake`` call computes the digests, and parsing costs many times what reading and
hashing the files does. So with ``memo_file``, what parsing each file found is kept there for the
next call, by path with the SHA-256 of the file's bytes, and only files whose bytes changed are
parsed again. A record serves only the bytes it was made from, and a memo written by another
Python (whose trees differ) is not read: deleting it is always safe.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["library_digests", "library_sources", "script_imports"]

PACKAGE = "prunequant"
LAZY_EXPORTS = "lazy_exports"
# The fields through which statements hold statements: every import and every docstring is in one.
_STATEMENT_LISTS = ("body", "orelse", "finalbody", "handlers", "cases")


@dataclass(frozen=True)
class _Import:
    level: int  # leading dots of a relative import, 0 for an absolute one
    module: str  # "a.b" in `import a.b` and `from a.b import c`; "" in `from . import c`
    names: tuple[str, ...]  # what `from ... import` takes; () for a plain `import`


@dataclass(frozen=True)
class _ModuleCode:
    digest: str
    imports: tuple[_Import, ...]
    lazy_exports: tuple[tuple[str, str], ...]  # exported name → the module that defines it

    def to_record(self) -> dict:
        return {
            "digest": self.digest,
            "imports": [[item.level, item.module, list(item.names)] for item in self.imports],
            "lazy_exports": [list(pair) for pair in self.lazy_exports],
        }

    @classmethod
    def from_record(cls, record: dict) -> _ModuleCode:
        imports = tuple(_Import(level, module, tuple(names)) for level, module, names in record["imports"])
        exports = tuple((name, module) for name, module in record["lazy_exports"])
        return cls(digest=str(record["digest"]), imports=imports, lazy_exports=exports)


# How the closure reads a module: each file once per call, parsed or from the memo.
_Reader = Callable[[Path], _ModuleCode]


def library_digests(
    script: str | Path, package_dir: str | Path, *, memo_file: str | os.PathLike | None = None
) -> dict[str, str]:
    """``scripts/<name>.py`` and every module path (``prunequant/...``) :func:`library_sources`
    finds for ``script`` → a SHA-256 prefix of the code it runs.

    ``memo_file``: where what parsing each file found is kept for the next process.
    """
    script, package_dir = Path(script), Path(package_dir)
    memo = _Memo.of(Path(memo_file)) if memo_file is not None else None
    read = cache(memo.code_of if memo is not None else _code_of)
    digests = {f"{script.parent.name}/{script.name}": read(script).digest}
    for path in sorted(_closure(script, package_dir, read)):  # a param's text: in a fixed order
        digests[path.relative_to(package_dir.parent).as_posix()] = read(path).digest
    if memo is not None:
        memo.save()
    return digests


def library_sources(script: str | Path, package_dir: str | Path) -> list[str]:
    """Sorted paths of every ``prunequant`` module that ``script`` imports, transitively.

    The package's ``__init__.py`` is always included, since importing any submodule runs it.
    """
    return sorted(str(path) for path in _closure(Path(script), Path(package_dir), cache(_code_of)))


def script_imports(script: str | Path, package_dir: str | Path) -> list[str]:
    """Sorted names of the ``prunequant`` modules ``script`` imports itself, parent packages included."""
    return sorted(_imported_modules(Path(script), Path(package_dir), cache(_code_of)))


def _closure(script: Path, package_dir: Path, read: _Reader) -> set[Path]:
    found = {package_dir / "__init__.py"}
    pending, seen = [script], set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_modules(path, package_dir, read):
            module_file = _module_file(name, package_dir)
            found.add(module_file)
            pending.append(module_file)
    return found


# --- reading a module ------------------------------------------------------------------------


def _code_of(path: Path) -> _ModuleCode:
    return _read_code(path.read_bytes(), str(path))


@cache  # keyed by the content: a file edited within a process is read anew
def _read_code(source: bytes, filename: str) -> _ModuleCode:
    tree = ast.parse(source, filename)
    imports: list[_Import] = []
    _drop_strings_and_collect_imports(tree, imports)
    return _ModuleCode(
        digest=hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16],
        imports=tuple(imports),
        lazy_exports=tuple(_lazy_exports(tree, filename).items()),
    )


def _is_string_statement(statement: ast.AST) -> bool:
    """A docstring, or any other statement that is only a string: Python compiles it to nothing."""
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


def _drop_strings_and_collect_imports(node: ast.AST, imports: list[_Import]) -> None:
    """Remove the string statements under ``node`` and note its imports, walking statements only."""
    for field in _STATEMENT_LISTS:
        statements = getattr(node, field, None)
        if not statements:
            continue
        kept = [statement for statement in statements if not _is_string_statement(statement)]
        setattr(node, field, kept)
        for statement in kept:
            if isinstance(statement, ast.Import):
                imports.extend(_Import(0, alias.name, ()) for alias in statement.names)
            elif isinstance(statement, ast.ImportFrom):
                names = tuple(alias.name for alias in statement.names)
                imports.append(_Import(statement.level, statement.module or "", names))
            else:
                _drop_strings_and_collect_imports(statement, imports)


def _lazy_exports(tree: ast.Module, filename: str) -> dict[str, str]:
    """What a module hands to ``lazy_exports(__name__, exports)``: name → defining module."""
    assigned: dict[str, ast.expr | None] = {}  # module-level name → what was last assigned to it
    for statement in tree.body:
        if isinstance(statement, ast.Assign):
            targets, value = statement.targets, statement.value
        elif isinstance(statement, (ast.AnnAssign, ast.Expr)):
            targets, value = [getattr(statement, "target", None)], statement.value
        else:
            continue
        if isinstance(value, ast.Call) and _called_name(value) == LAZY_EXPORTS:
            return _literal_exports(value, assigned, filename)
        assigned.update((target.id, value) for target in targets if isinstance(target, ast.Name))
    return {}


def _literal_exports(call: ast.Call, assigned: dict[str, ast.expr | None], filename: str) -> dict[str, str]:
    exports = call.args[1] if len(call.args) == 2 else None
    if isinstance(exports, ast.Name):
        exports = assigned.get(exports.id)
    try:
        return dict(ast.literal_eval(exports))
    except (ValueError, TypeError, SyntaxError):
        # An export map the digests cannot read would hide dependencies: stop the planning.
        message = f"{filename}: {LAZY_EXPORTS} takes its exports as a dict literal or a name bound to one"
        raise ValueError(message) from None


def _called_name(call: ast.Call) -> str | None:
    function = call.func
    if isinstance(function, ast.Attribute):
        return function.attr
    return function.id if isinstance(function, ast.Name) else None


# --- from imports to modules -------------------------------------------------------------------


@cache
def _module_file(name: str, package_dir: Path) -> Path | None:
    """The file of module ``name`` of the package, or None when the name is not a module."""
    if name == PACKAGE:
        return package_dir / "__init__.py"
    relative = Path(*name.split(".")[1:])
    candidates = (package_dir / relative.with_suffix(".py"), package_dir / relative / "__init__.py")
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def _module_name(path: Path, package_dir: Path) -> str | None:
    """``prunequant.a.b`` for ``<package_dir>/a/b.py`` (or ``a/b/__init__.py``); None outside it."""
    try:
        relative = path.relative_to(package_dir).with_suffix("")
    except ValueError:
        return None
    return ".".join([PACKAGE, *(part for part in relative.parts if part != "__init__")])


def _absolute(level: int, module: str, importer: str | None, importer_is_package: bool) -> str | None:
    """The absolute name of what an import names, resolving ``level`` leading dots."""
    if level == 0:
        return module
    if importer is None:
        return None  # a relative import in a script outside the package
    parts = importer.split(".")
    base = parts if importer_is_package else parts[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _lazily_exported(name: str, package_dir: Path, read: _Reader) -> dict[str, str]:
    module_file = _module_file(name, package_dir)
    return dict(read(module_file).lazy_exports) if module_file is not None else {}


def _as_namespace(name: str, package_dir: Path, read: _Reader) -> set[str]:
    """Module ``name``, bound to a name whose attributes may be any of its lazy exports."""
    return {name, *_lazily_exported(name, package_dir, read).values()}


def _imported_modules(path: Path, package_dir: Path, read: _Reader) -> set[str]:
    """The ``prunequant`` modules that running ``path`` imports itself, their parents included."""
    importer = _module_name(path, package_dir)
    found: set[str] = set()
    for imported in read(path).imports:
        base = _absolute(imported.level, imported.module, importer, path.name == "__init__.py")
        if base is None or (base != PACKAGE and not base.startswith(PACKAGE + ".")):
            continue
        if not imported.names:  # import a.b.c
            found |= _as_namespace(base, package_dir, read)
            continue
        found.add(base)
        exported = _lazily_exported(base, package_dir, read)
        for name in imported.names:
            submodule = f"{base}.{name}"
            if name == "*":
                found |= _as_namespace(base, package_dir, read)
            elif _module_file(submodule, package_dir) is not None:  # from a import b, b a module
                found |= _as_namespace(submodule, package_dir, read)
            elif name in exported:
                found.add(exported[name])
    # Importing a.b.c runs a/__init__ and a/b/__init__ first: the parent packages count too.
    parts = [name.split(".") for name in found]
    with_parents = {".".join(name[:end]) for name in parts for end in range(1, len(name) + 1)}
    return {name for name in with_parents if _module_file(name, package_dir) is not None}


# --- what parsing found, kept between processes ---------------------------------------------

_MEMO_FORMAT = 1


class _Memo:
    """Module path → [SHA-256 of the bytes it was parsed from, what parsing them found]."""

    _of_file: dict[Path, _Memo] = {}  # one per memo file and process: the rules share the modules

    @classmethod
    def of(cls, file: Path) -> _Memo:
        if file not in cls._of_file:
            cls._of_file[file] = cls(file)
        return cls._of_file[file]

    def __init__(self, file: Path):
        self.file = file
        self.records = self._read()
        self.changed = False

    def _read(self) -> dict[str, list]:
        try:
            content = json.loads(self.file.read_text())
            if content["format"] == _MEMO_FORMAT and content["python"] == sys.version:
                return dict(content["modules"])
        except (OSError, ValueError, KeyError, TypeError):
            pass  # none yet, or unreadable: every file is parsed
        return {}

    def code_of(self, path: Path) -> _ModuleCode:
        source = path.read_bytes()
        fingerprint = hashlib.sha256(source).hexdigest()
        known = self.records.get(str(path))
        if isinstance(known, list) and len(known) == 2 and known[0] == fingerprint:
            try:
                return _ModuleCode.from_record(known[1])
            except (KeyError, TypeError, ValueError):
                pass  # a damaged record: parse again
        code = _read_code(source, str(path))
        self.records[str(path)] = [fingerprint, code.to_record()]
        self.changed = True
        return code

    def save(self) -> None:
        """Replace the memo file whole, without the records of files that are gone; a project that
        cannot be written to (read-only) parses every time, and of two writers the last one's stays."""
        if not self.changed:
            return
        self.changed = False
        records = {path: record for path, record in self.records.items() if os.path.exists(path)}
        content = {"format": _MEMO_FORMAT, "python": sys.version, "modules": records}
        partial = self.file.with_name(f"{self.file.name}.{os.getpid()}.partial")
        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps(content))
            os.replace(partial, self.file)
        except OSError:
            partial.unlink(missing_ok=True)
