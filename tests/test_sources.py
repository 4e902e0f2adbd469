from pathlib import Path

from prunequant.sources import library_sources

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "prunequant"
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def names(paths):
    return {Path(p).name for p in paths}


def test_transitive_imports_are_found(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("from prunequant.training import run_training\n")
    found = names(library_sources(script, PACKAGE))
    # training imports engine, which imports checkpoint, which imports model
    assert {"__init__.py", "training.py", "engine.py", "checkpoint.py", "model.py", "data.py"} <= found
    assert "report.py" not in found and "quantize.py" not in found


def test_from_package_import_submodule_form(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("import os\nfrom prunequant import prune\n")
    assert names(library_sources(script, PACKAGE)) >= {"prune.py", "model.py"}


def test_every_workflow_script_depends_on_some_library_module():
    for script in SCRIPTS.glob("*.py"):
        assert len(library_sources(script, PACKAGE)) > 1, script.name
