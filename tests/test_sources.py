from pathlib import Path

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


def test_digests_name_modules_relative_to_the_package_and_follow_their_content(tmp_path):
    package = tmp_path / "src" / "prunequant"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "helper.py").write_text("VALUE = 1\n")
    script = tmp_path / "job.py"
    script.write_text("from prunequant.helper import VALUE\n")
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
