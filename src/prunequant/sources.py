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
import json
import os
import re
import time
from functools import cache
from pathlib import Path

__all__ = ["file_version", "library_digests", "library_sources", "script_imports"]

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


def _candidates(name: str, package_dir: Path) -> tuple[Path, ...]:
    """The files that would hold module ``name``, in the order Python tries them."""
    relative = Path(*name.split(".")[1:])
    return (package_dir / relative.with_suffix(".py"), package_dir / relative / "__init__.py")


@cache
def _module_file(name: str, package_dir: Path) -> Path | None:
    if name == PACKAGE:
        return package_dir / "__init__.py"
    return next((candidate for candidate in _candidates(name, package_dir) if candidate.is_file()), None)


def library_sources(script: str | Path, package_dir: str | Path) -> list[str]:
    """Sorted paths of every ``prunequant`` module that ``script`` imports, transitively.

    The package's ``__init__.py`` is always included, since importing any
    submodule runs it.
    """
    return list(_closure(Path(script), Path(package_dir))[0])


@cache
def _closure(script: Path, package_dir: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The files of every module ``script`` imports, transitively; and the files looked for and
    not found (imported names that are not modules): one of those appearing can change the first."""
    found: set[Path] = {package_dir / "__init__.py"}
    absent: set[Path] = set()
    pending = [Path(script)]
    seen: set[Path] = set()
    while pending:
        path = pending.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported_modules(path, _module_name(path, package_dir)):
            module_file = _module_file(name, package_dir)
            if module_file is None:
                absent.update(_candidates(name, package_dir))
            elif module_file not in found:
                found.add(module_file)
                pending.append(module_file)
    return tuple(sorted(str(path) for path in found)), tuple(sorted(str(path) for path in absent))


def library_digests(
    script: str | Path, package_dir: str | Path, *, cache_file: str | os.PathLike | None = None
) -> dict[str, str]:
    """Module path (``prunequant/...``, relative, so a moved project matches) → SHA-256 prefix of
    its bytes, for every module :func:`library_sources` finds for ``script``.

    With ``cache_file``, the answer is kept there for the next process, which reuses it while the
    script and every file it found keep their size and modification time and every module file
    it looked for and did not find is still absent. A file modified within two seconds of being
    recorded is read again (file systems with coarse times could hide a second edit).
    """
    script, package_dir = Path(script), Path(package_dir)
    if cache_file is None:
        return _fresh_digests(script, package_dir)
    records = _records(Path(cache_file))
    key = f"{script.resolve()}|{package_dir.resolve()}"
    if _still_valid(records.get(key), _file_states[Path(cache_file)]):
        return dict(records[key]["digests"])
    recorded_ns = time.time_ns()
    digests = _fresh_digests(script, package_dir)
    files, absent = _closure(script, package_dir)
    versions = {path: _digests[path][0] for path in files}  # as they were when hashed
    versions[str(script)] = file_version(script)
    records[key] = {
        "versions": versions,
        "absent": list(absent),
        "recorded_ns": recorded_ns,
        "digests": digests,
    }
    _write_records(Path(cache_file), records)
    return digests


def _fresh_digests(script: Path, package_dir: Path) -> dict[str, str]:
    return {
        _relative_name(path, package_dir.parent): _digest(path) for path in _closure(script, package_dir)[0]
    }


# A no-op `snakemake -n` of the default study spends about 30 ms reading and hashing modules for
# its 11 scripts' digests; with the record, about 3 ms: one stat of each of the 60-odd files the
# records name, and one look for each of the 320 module files they record as absent.
_RECORD_FORMAT = 1
_RACY_NS = 2_000_000_000
_loaded_records: dict[Path, dict] = {}
# Per record file, the state of each file the records name as this process found it: its version,
# or None when it does not exist. The 11 scripts' records share most modules and most absent
# candidates (about 1,600 of the default study's absence checks are of 320 paths), so each file is
# looked at once rather than once per script.
_file_states: dict[Path, dict[str, tuple[int, int] | None]] = {}


def _records(cache_file: Path) -> dict:
    if cache_file not in _loaded_records:
        _file_states[cache_file] = {}
        try:
            content = json.loads(cache_file.read_text())
            valid = isinstance(content, dict) and content.get("format") == _RECORD_FORMAT
            _loaded_records[cache_file] = content["scripts"] if valid else {}
        except (OSError, ValueError, KeyError):
            _loaded_records[cache_file] = {}
    return _loaded_records[cache_file]


def _still_valid(record: dict | None, states: dict[str, tuple[int, int] | None]) -> bool:
    if not isinstance(record, dict):
        return False
    try:
        trusted_before = record["recorded_ns"] - _RACY_NS
        for path, (mtime_ns, size) in record["versions"].items():
            if mtime_ns > trusted_before or _file_state(path, states) != (mtime_ns, size):
                return False
        absent_still = all(_file_state(path, states) is None for path in record["absent"])
        return absent_still and isinstance(record["digests"], dict)
    except (OSError, KeyError, TypeError, ValueError):
        return False


def _file_state(path: str, states: dict[str, tuple[int, int] | None]) -> tuple[int, int] | None:
    """A file's version, or None when it does not exist; looked at once per record file and process."""
    if path not in states:
        try:
            states[path] = file_version(path)
        except (FileNotFoundError, NotADirectoryError):
            states[path] = None
    return states[path]


def _write_records(cache_file: Path, records: dict) -> None:
    """Replace the record file whole; a process that cannot write it (a read-only project) just
    computes its digests every time, and of two writing at once the last one's record stays."""
    partial = cache_file.with_name(f"{cache_file.name}.{os.getpid()}.partial")
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"format": _RECORD_FORMAT, "scripts": records}))
        os.replace(partial, cache_file)
    except OSError:
        partial.unlink(missing_ok=True)


@cache
def _relative_name(path: str, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


# Every rule's params hash the modules its script imports, and the rules share most of them:
# each file is hashed once per process, again only if its size or modification time changes.
_digests: dict[str, tuple[tuple[int, int], str]] = {}


def file_version(path: str | os.PathLike) -> tuple[int, int]:
    """A file's (modification time in ns, size): what tells an edited file from one left alone."""
    status = os.stat(path)
    return status.st_mtime_ns, status.st_size


def _digest(path: str) -> str:
    version = file_version(path)
    known = _digests.get(path)
    if known is None or known[0] != version:
        with open(path, "rb") as file:
            known = _digests[path] = (version, hashlib.sha256(file.read()).hexdigest()[:16])
    return known[1]
