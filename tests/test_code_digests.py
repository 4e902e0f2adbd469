"""The code param: which library modules a script runs, and digests that follow code, not comments."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prunequant.workflow import code_digests
from prunequant.workflow.code_digests import library_digests, library_sources, script_imports

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "prunequant"
SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def names(paths):
    return {Path(p).name for p in paths}


def relative(paths, package=PACKAGE):
    return {Path(p).relative_to(package).as_posix() for p in paths}


def write_package(root: Path, modules: dict[str, str], script: str) -> tuple[Path, Path]:
    """A ``prunequant`` package of ``modules`` (relative path → code) and a script ``job.py``."""
    package = root / "src" / "prunequant"
    for name, code in {"__init__.py": "", **modules}.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(textwrap.dedent(code))
    job = root / "scripts" / "job.py"
    job.parent.mkdir(parents=True, exist_ok=True)
    job.write_text(textwrap.dedent(script))
    return package, job


def test_transitive_imports_are_found(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("from prunequant.training import run_training\n")
    found = names(library_sources(script, PACKAGE))
    # training imports engine, which imports checkpoint, which imports model
    assert {"__init__.py", "training.py", "engine.py", "checkpoint.py", "model.py", "dataset.py"} <= found
    assert "build.py" not in found and "ptq.py" not in found


def test_from_package_import_submodule_form(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("import os\nfrom prunequant import training\n")
    assert names(library_sources(script, PACKAGE)) >= {"training.py", "model.py"}


def test_importing_a_submodule_counts_its_parent_packages(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("from prunequant.prune.structured import prune_structured\n")
    assert {"prune/__init__.py", "prune/structured.py", "__init__.py"} <= relative(
        library_sources(script, PACKAGE)
    )


def test_every_workflow_script_depends_on_some_library_module():
    for script in SCRIPTS.glob("*.py"):
        assert len(library_sources(script, PACKAGE)) > 1, script.name


def test_relative_imports_inside_a_subpackage_are_followed(tmp_path):
    package, job = write_package(
        tmp_path,
        {
            "sub/__init__.py": "from .leaf import thing\n",
            "sub/leaf.py": "from ..top import other\n",
            "top.py": "",
        },
        "from prunequant.sub import thing\n",
    )
    (package / "unused.py").write_text("")
    assert relative(library_sources(job, package), package) == {
        "__init__.py",
        "sub/__init__.py",
        "sub/leaf.py",
        "top.py",
    }


def test_imports_are_read_off_the_code_wherever_they_are_and_not_off_text(tmp_path):
    package, job = write_package(
        tmp_path,
        {
            "helper.py": '''\
                """Not a dependency, though this line reads like one:
                from prunequant.mentioned import nothing
                """

                def run():
                    from prunequant.late import VALUE  # imported when run() runs
                    return VALUE
                ''',
            "late.py": "VALUE = 1\n",
            "mentioned.py": "",
        },
        "from prunequant.helper import run\n",
    )
    assert relative(library_sources(job, package), package) == {"__init__.py", "helper.py", "late.py"}


# A package exporting its names lazily, as prunequant.prune and prunequant.quantize do.
LAZY_PACKAGE = {
    "lazy.py": "def lazy_exports(package, exports): ...\n",
    "tools/__init__.py": """\
        from prunequant.lazy import lazy_exports

        _EXPORTS = {"cut": "prunequant.tools.cutting", "glue": "prunequant.tools.gluing"}

        __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
        """,
    "tools/cutting.py": "def cut(): ...\n",
    "tools/gluing.py": "def glue(): ...\n",
}


@pytest.mark.parametrize(
    "script, expected",
    [
        ("from prunequant.tools import cut\n", {"tools/cutting.py"}),
        ("from prunequant.tools import glue, cut\n", {"tools/cutting.py", "tools/gluing.py"}),
        ("from prunequant import tools\n", {"tools/cutting.py", "tools/gluing.py"}),
        ("import prunequant.tools\n", {"tools/cutting.py", "tools/gluing.py"}),
        ("from prunequant.tools import *\n", {"tools/cutting.py", "tools/gluing.py"}),
        ("from prunequant.tools.gluing import glue\n", {"tools/gluing.py"}),
    ],
    ids=["one-name", "two-names", "package-as-name", "import-package", "star", "submodule"],
)
def test_imports_through_lazy_exports_reach_the_modules_that_define_the_names(tmp_path, script, expected):
    package, job = write_package(tmp_path, LAZY_PACKAGE, script)
    found = relative(library_sources(job, package), package)
    assert found == {"__init__.py", "tools/__init__.py", "lazy.py"} | expected


def test_the_real_lazy_packages_are_seen_through(tmp_path):
    script = tmp_path / "job.py"
    script.write_text(
        "from prunequant.prune import prune_structured\nfrom prunequant.quantize import OnnxClassifier\n"
    )
    found = relative(library_sources(script, PACKAGE))
    assert {"prune/structured.py", "quantize/runtime.py"} <= found
    assert "prune/sensitivity.py" not in found and "quantize/ptq.py" not in found


def test_lazy_exports_the_digests_cannot_read_stop_the_planning(tmp_path):
    modules = dict(LAZY_PACKAGE)
    modules["tools/__init__.py"] = (
        modules["tools/__init__.py"]
        .replace('_EXPORTS = {"cut"', '_EXPORTS = dict(sorted({"cut"')
        .replace('"prunequant.tools.gluing"}', '"prunequant.tools.gluing"}.items()))')
    )
    package, job = write_package(tmp_path, modules, "from prunequant.tools import cut\n")
    with pytest.raises(ValueError, match=r"tools/__init__\.py: lazy_exports"):
        library_sources(job, package)


def test_script_imports_are_the_modules_a_script_names_itself(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("from prunequant.quantize.export import export_onnx\nimport prunequant.workflow.jobs\n")
    # parent packages included, imported names that are not modules left out, nothing transitive
    assert script_imports(script, PACKAGE) == [
        "prunequant",
        "prunequant.quantize",
        "prunequant.quantize.export",
        "prunequant.workflow",
        "prunequant.workflow.jobs",
    ]


HELPER = '''\
"""The helper module."""

import math


class Scale:
    """Scales values."""

    def __init__(self, factor):
        self.factor = factor  # how much

    def apply(self, value):
        """The value, scaled."""
        return math.floor(value * self.factor)
'''


@pytest.mark.parametrize(
    "edit",
    [
        lambda code: code.replace("# how much", "# the factor, now explained at length"),
        lambda code: code.replace('"""The value, scaled."""', '"""The value, multiplied by the factor."""'),
        lambda code: code.replace('    """Scales values."""\n\n', ""),  # a docstring removed
        lambda code: code.replace('"""The helper module."""', '"""The helper module.\n\nLonger now."""'),
        lambda code: code.replace("import math\n", "import math\n\n\n# a comment on a line of its own\n"),
        lambda code: code.replace("self.factor = factor", "self.factor = (\n            factor\n        )"),
    ],
    ids=["comment", "docstring", "docstring-removed", "module-docstring", "blank-lines", "layout"],
)
def test_comments_docstrings_and_layout_leave_the_digests_as_they_were(tmp_path, edit):
    package, job = write_package(tmp_path, {"helper.py": HELPER}, "from prunequant.helper import Scale\n")
    before = library_digests(job, package)
    (package / "helper.py").write_text(edit(HELPER))
    job.write_text("# the job\nfrom prunequant.helper import Scale  # the one it needs\n")
    assert library_digests(job, package) == before


@pytest.mark.parametrize(
    "edit",
    [
        lambda code: code.replace("math.floor", "math.ceil"),
        lambda code: code.replace("self.factor = factor", "self.factor = factor\n        assert factor > 0"),
        lambda code: code.replace("value * self.factor", "value * self.factor * 1.0"),
        lambda code: code.replace('"""The value, scaled."""', '"""The value, scaled."""\n        print("x")'),
    ],
    ids=["call", "assert", "expression", "statement"],
)
def test_every_code_edit_changes_the_digest_of_its_module_only(tmp_path, edit):
    package, job = write_package(tmp_path, {"helper.py": HELPER}, "from prunequant.helper import Scale\n")
    before = library_digests(job, package)
    assert set(before) == {"scripts/job.py", "prunequant/__init__.py", "prunequant/helper.py"}
    (package / "helper.py").write_text(edit(HELPER))
    after = library_digests(job, package)
    assert after["prunequant/helper.py"] != before["prunequant/helper.py"]
    assert {key: value for key, value in after.items() if key != "prunequant/helper.py"} == {
        key: value for key, value in before.items() if key != "prunequant/helper.py"
    }


def test_a_code_edit_of_the_script_changes_its_digest(tmp_path):
    package, job = write_package(tmp_path, {"helper.py": HELPER}, "from prunequant.helper import Scale\n")
    before = library_digests(job, package)
    job.write_text("from prunequant.helper import Scale\nScale(2).apply(1)\n")
    assert library_digests(job, package)["scripts/job.py"] != before["scripts/job.py"]


def test_a_project_moved_elsewhere_has_the_same_digests(tmp_path):
    first = write_package(tmp_path / "here", {"helper.py": HELPER}, "from prunequant.helper import Scale\n")
    second = write_package(tmp_path / "there", {"helper.py": HELPER}, "from prunequant.helper import Scale\n")
    assert library_digests(first[1], first[0]) == library_digests(second[1], second[0])


@pytest.fixture
def new_process(monkeypatch):
    """Forget what this process parsed and read from memo files, as a new `snakemake` call starts."""

    parse = code_digests._read_code  # its cache, even while a test wraps it

    def forget():
        parse.cache_clear()
        monkeypatch.setattr(code_digests._Memo, "_of_file", {})

    forget()
    yield forget
    forget()


def test_a_memo_spares_the_next_process_every_parse_of_unchanged_files(tmp_path, new_process, monkeypatch):
    package, job = write_package(tmp_path, {"helper.py": HELPER}, "from prunequant.helper import Scale\n")
    memo = tmp_path / "cache" / "code-digests.json"
    first = library_digests(job, package, memo_file=memo)
    assert first == library_digests(job, package) and memo.is_file()
    new_process()
    parsed = []
    real_read_code = code_digests._read_code
    monkeypatch.setattr(
        code_digests, "_read_code", lambda source, name: parsed.append(name) or real_read_code(source, name)
    )
    assert library_digests(job, package, memo_file=memo) == first
    assert parsed == []
    (package / "helper.py").write_text(HELPER.replace("math.floor", "math.ceil"))  # the same size
    new_process()
    edited = library_digests(job, package, memo_file=memo)
    assert parsed == [str(package / "helper.py")]
    assert edited["prunequant/helper.py"] != first["prunequant/helper.py"]


@pytest.mark.parametrize(
    "content",
    ["{not json", '{"format": 1, "python": "another", "modules": {}}', '{"format": 1, "python": null}', "[]"],
    ids=["broken", "another-python", "no-modules", "not-a-memo"],
)
def test_a_memo_that_cannot_be_used_is_parsed_around(tmp_path, new_process, content):
    package, job = write_package(tmp_path, {"helper.py": HELPER}, "from prunequant.helper import Scale\n")
    memo = tmp_path / "code-digests.json"
    memo.write_text(content)
    assert library_digests(job, package, memo_file=memo) == library_digests(job, package)


def test_a_damaged_record_is_parsed_again(tmp_path, new_process):
    package, job = write_package(tmp_path, {"helper.py": HELPER}, "from prunequant.helper import Scale\n")
    memo = tmp_path / "code-digests.json"
    expected = library_digests(job, package, memo_file=memo)
    content = json.loads(memo.read_text())
    content["modules"][str(package / "helper.py")][1] = {"digest": "x"}  # no imports
    memo.write_text(json.dumps(content))
    new_process()
    assert library_digests(job, package, memo_file=memo) == expected


def test_the_digests_come_in_the_same_order_in_every_process(tmp_path):
    # Snakemake compares a param's text: a dict's order is part of it, and sets of paths are
    # ordered by a hash seed that differs per process.
    command = (
        "import sys; from prunequant.workflow.code_digests import library_digests; "
        "print(list(library_digests(sys.argv[1], sys.argv[2])))"
    )
    orders = {
        subprocess.run(
            [sys.executable, "-c", command, str(SCRIPTS / "train_baseline.py"), str(PACKAGE)],
            env=os.environ | {"PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in range(4)
    }
    assert len(orders) == 1
