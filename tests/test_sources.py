import os
import time
from pathlib import Path

import pytest

from prunequant import sources
from prunequant.sources import library_digests, library_sources, script_imports

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "prunequant"
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def names(paths):
    return {Path(p).name for p in paths}


def test_transitive_imports_are_found(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("from prunequant.training import run_training\n")
    found = names(library_sources(script, PACKAGE))
    # training imports engine, which imports checkpoint, which imports model
    assert {
        "__init__.py",
        "training.py",
        "engine.py",
        "checkpoint.py",
        "model.py",
        "dataset.py",
        "raw.py",
    } <= found
    assert "build.py" not in found and "ptq.py" not in found


def test_from_package_import_submodule_form(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("import os\nfrom prunequant import training\n")
    assert names(library_sources(script, PACKAGE)) >= {"training.py", "model.py"}


def test_importing_a_submodule_counts_its_parent_packages(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("from prunequant.prune.structured import prune_structured\n")
    found = {str(Path(path).relative_to(PACKAGE)) for path in library_sources(script, PACKAGE)}
    assert {"prune/__init__.py", "prune/structured.py", "__init__.py"} <= found


def test_every_workflow_script_depends_on_some_library_module():
    for script in SCRIPTS.glob("*.py"):
        assert len(library_sources(script, PACKAGE)) > 1, script.name


def test_relative_imports_inside_a_subpackage_are_followed(tmp_path):
    package = tmp_path / "prunequant"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from .leaf import thing\n")
    (package / "sub" / "leaf.py").write_text("from ..top import other\n")
    (package / "top.py").write_text("")
    (package / "unused.py").write_text("")
    script = tmp_path / "job.py"
    script.write_text("from prunequant.sub import thing\n")
    found = {str(Path(p).relative_to(package)) for p in library_sources(script, package)}
    assert found == {"__init__.py", "sub/__init__.py", "sub/leaf.py", "top.py"}


def write_package(root: Path, helper: str) -> tuple[Path, Path]:
    """A package with an empty ``__init__`` and a ``helper`` module, and a script importing from it."""
    package = root / "src" / "prunequant"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text(helper)
    script = root / "job.py"
    script.write_text("from prunequant.helper import VALUE\n")
    return package, script


def test_digests_name_modules_relative_to_the_package_and_follow_their_content(tmp_path):
    package, script = write_package(tmp_path, "VALUE = 1\n")
    before = library_digests(script, package)
    assert set(before) == {"prunequant/__init__.py", "prunequant/helper.py"}
    (package / "helper.py").write_text("VALUE = 2\n")
    after = library_digests(script, package)
    assert after["prunequant/helper.py"] != before["prunequant/helper.py"]
    assert after["prunequant/__init__.py"] == before["prunequant/__init__.py"]


def test_script_imports_are_the_modules_a_script_names_itself(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("from prunequant.quantize.export import export_onnx\nimport prunequant.jobs\n")
    # parent packages included, imported names that are not modules left out, nothing transitive
    expected = ["prunequant", "prunequant.jobs", "prunequant.quantize", "prunequant.quantize.export"]
    assert script_imports(script, PACKAGE) == expected


def _new_process():
    """Forget what this process read and hashed, as a new `snakemake` call starts without it."""
    sources._loaded_records.clear()
    sources._digests.clear()
    for cached in (sources._closure, sources._imported_modules, sources._module_file):
        cached.cache_clear()


def _age(*paths, seconds=60):
    """Set the files' modification time ``seconds`` into the past (older than the racy window)."""
    for path in paths:
        past = time.time_ns() - seconds * 1_000_000_000
        os.utime(path, ns=(past, past))


@pytest.fixture
def tiny_package(tmp_path):
    package, script = write_package(tmp_path, "from prunequant import extra\nVALUE = 1\n")
    _age(package / "__init__.py", package / "helper.py", script)
    _new_process()
    yield package, script, tmp_path / "cache" / "digests.json"
    _new_process()


def test_recorded_digests_spare_the_next_process_reading_the_modules(tiny_package, monkeypatch):
    package, script, cache_file = tiny_package
    first = library_digests(script, package, cache_file=cache_file)
    assert first == library_digests(script, package)
    assert cache_file.is_file()
    _new_process()

    def unread(*args):
        raise AssertionError("a module was read although nothing changed")

    monkeypatch.setattr(sources, "_imported_modules", unread)
    monkeypatch.setattr(sources, "_digest", unread)
    assert library_digests(script, package, cache_file=cache_file) == first


def test_recorded_digests_follow_an_edit_a_new_module_and_a_broken_record(tiny_package):
    package, script, cache_file = tiny_package
    first = library_digests(script, package, cache_file=cache_file)
    assert set(first) == {"prunequant/__init__.py", "prunequant/helper.py"}

    (package / "helper.py").write_text("from prunequant import extra\nVALUE = 2\n")  # same size
    _age(package / "helper.py", seconds=30)
    _new_process()
    edited = library_digests(script, package, cache_file=cache_file)
    assert edited["prunequant/helper.py"] != first["prunequant/helper.py"]

    (package / "extra.py").write_text("")  # the name helper imports is now a module of its own
    _age(package / "extra.py")
    _new_process()
    assert "prunequant/extra.py" in library_digests(script, package, cache_file=cache_file)

    cache_file.write_text("{not json")
    _new_process()
    assert library_digests(script, package, cache_file=cache_file) == library_digests(script, package)


def test_a_file_changed_just_before_it_was_recorded_is_read_again(tiny_package):
    # A second edit that keeps the size within a coarse file system's time step leaves the same
    # (size, mtime); a record made that close to the file's mtime is not trusted.
    package, script, cache_file = tiny_package
    helper = package / "helper.py"
    helper.write_text("from prunequant import extra\nVALUE = 3\n")
    recorded_time = helper.stat().st_mtime_ns
    first = library_digests(script, package, cache_file=cache_file)
    helper.write_text("from prunequant import extra\nVALUE = 4\n")
    os.utime(helper, ns=(recorded_time, recorded_time))
    _new_process()
    assert (
        library_digests(script, package, cache_file=cache_file)["prunequant/helper.py"]
        != (first["prunequant/helper.py"])
    )


def test_a_process_checks_each_recorded_file_once_however_many_scripts_name_it(tiny_package, monkeypatch):
    # Every rule's params name its script's digests; the scripts share modules and the names
    # they import that are not modules, so a no-op `snakemake` would otherwise look at the same
    # paths once per rule.
    package, script, cache_file = tiny_package
    twin = script.with_name("twin.py")
    twin.write_text(script.read_text())
    _age(twin)
    expected = {path: library_digests(path, package, cache_file=cache_file) for path in (script, twin)}
    _new_process()
    looked_at = []
    real_exists, real_version = os.path.exists, sources.file_version
    monkeypatch.setattr(sources.os.path, "exists", lambda path: looked_at.append(path) or real_exists(path))
    monkeypatch.setattr(sources, "file_version", lambda path: looked_at.append(path) or real_version(path))
    assert {
        path: library_digests(path, package, cache_file=cache_file) for path in (script, twin)
    } == expected
    assert looked_at and len(looked_at) == len(set(looked_at))
    assert "prunequant/helper.py" in expected[twin]
