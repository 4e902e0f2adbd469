"""Job scripts handed to a warm worker: same arguments, folder, environment, streams, status, bytes."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import prunequant.jobs
from prunequant.warmstart import START_TIMEOUT_SECONDS, SWITCH, server_key, start_server, warm_start_enabled

# What every probe script does first: note what its process had imported before the hand-over
# (a warm worker starts with torch, the exporter and, while unedited, the library imported).
PROBE_HEAD = """\
import json, os, sys
preloaded = {
    "torch": "torch" in sys.modules,
    "exporter": "torch.onnx._internal.exporter._core" in sys.modules,  # a WARM_START_IMPORTS entry
    "training": "prunequant.training" in sys.modules,
}
from prunequant.warmstart import continue_in_warm_process
continue_in_warm_process()
"""


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory):
    """A private folder for this module's warm server; the server is stopped afterwards."""
    folder = tmp_path_factory.mktemp("runtime")
    yield folder
    for log in folder.glob("prunequant-warm-*/*.log"):
        for pid in re.findall(r"pid (\d+) listening", log.read_text()):
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


@pytest.fixture
def job_environment(runtime_dir):
    environment = {name: value for name, value in os.environ.items() if name not in {SWITCH, "SLURM_JOB_ID"}}
    environment["XDG_RUNTIME_DIR"] = str(runtime_dir)
    return environment


def write_probe(folder: Path, body: str) -> Path:
    script = folder / "probe.py"
    script.write_text(PROBE_HEAD + textwrap.dedent(body))
    return script


def run_probe(script: Path, environment: dict, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, script.name, *arguments],
        cwd=script.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )


def start_probe(script: Path, environment: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, script.name], cwd=script.parent, env=environment, stdout=subprocess.PIPE, text=True
    )


def wait_until_gone(pid: int, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_a_job_runs_in_a_warm_worker_with_its_arguments_folder_environment_and_streams(
    tmp_path, job_environment
):
    script = write_probe(
        tmp_path,
        """\
        print(json.dumps({"preloaded": preloaded, "argv": sys.argv, "cwd": os.getcwd(),
                          "probe": os.environ.get("PROBE"), "pid": os.getpid()}))
        print("to stderr", file=sys.stderr)
        """,
    )
    for probe in ("first", "second"):  # the first starts the server, the second finds it
        finished = run_probe(script, job_environment | {"PROBE": probe}, "--flag", "value")
        assert finished.returncode == 0, finished.stderr
        seen = json.loads(finished.stdout)
        assert seen["preloaded"] == {"torch": True, "exporter": True, "training": True}
        assert seen["argv"] == ["probe.py", "--flag", "value"]
        assert seen["cwd"] == str(tmp_path)
        assert seen["probe"] == probe
        assert finished.stderr == "to stderr\n"


def test_a_worker_imports_the_library_afresh_once_a_file_of_it_changed(tmp_path, job_environment):
    script = write_probe(tmp_path, 'print(json.dumps({"preloaded": preloaded}))')
    assert json.loads(run_probe(script, job_environment).stdout)["preloaded"]["training"] is True
    edited = Path(prunequant.jobs.__file__)
    before = edited.stat()
    try:
        os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # as an edit would
        seen = json.loads(run_probe(script, job_environment).stdout)["preloaded"]
        assert seen == {"torch": True, "exporter": True, "training": False}
    finally:
        os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert json.loads(run_probe(script, job_environment).stdout)["preloaded"]["training"] is True


@pytest.mark.parametrize(
    "body, code, stderr",
    [
        ("sys.exit(3)", 3, ""),
        ("sys.exit('bad input')", 1, "bad input\n"),
        ("raise ValueError('broken')", 1, "ValueError: broken"),
        (
            """\
            from prunequant.errors import UserError
            from prunequant.jobs import job_logging
            with job_logging("job.log"):
                raise UserError("no such file: x.csv")
            """,
            1,
            "prunequant: error: no such file: x.csv\n",
        ),
    ],
)
def test_the_job_exits_with_the_workers_status(tmp_path, job_environment, body, code, stderr):
    finished = run_probe(write_probe(tmp_path, body), job_environment)
    assert finished.returncode == code
    assert stderr in finished.stderr
    if code == 1 and "Error:" in stderr:
        assert "Traceback" in finished.stderr


@pytest.mark.parametrize(
    "setting", [{SWITCH: "0"}, {SWITCH: "false"}, {"SLURM_JOB_ID": "4242"}], ids=["off", "false", "slurm"]
)
def test_switched_off_or_on_slurm_the_job_runs_in_its_own_process(tmp_path, job_environment, setting):
    assert not warm_start_enabled(setting)
    script = write_probe(tmp_path, 'print(json.dumps({"pid": os.getpid(), "preloaded": preloaded}))')
    process = start_probe(script, job_environment | setting)
    output, _ = process.communicate(timeout=180)
    seen = json.loads(output)
    assert seen["pid"] == process.pid
    assert seen["preloaded"]["torch"] is False


def test_a_runtime_folder_open_to_others_is_not_used(tmp_path, job_environment):
    shared = tmp_path / "shared"
    (shared / f"prunequant-warm-{os.getuid()}").mkdir(parents=True, mode=0o777)
    (shared / f"prunequant-warm-{os.getuid()}").chmod(0o777)
    script = write_probe(tmp_path, 'print(json.dumps({"pid": os.getpid()}))')
    process = start_probe(script, job_environment | {"XDG_RUNTIME_DIR": str(shared)})
    output, _ = process.communicate(timeout=180)
    assert json.loads(output)["pid"] == process.pid
    assert not list(shared.rglob("*.sock"))


def test_another_checkout_of_the_library_gets_its_own_server(tmp_path):
    package = tmp_path / "checkout" / "prunequant"
    package.mkdir(parents=True)
    for name in ("__init__.py", "warmstart.py"):  # the same files, elsewhere
        (package / name).write_bytes((Path(prunequant.jobs.__file__).parent / name).read_bytes())
    command = "import prunequant.warmstart as w; print(w.__file__); print(w.server_key())"
    environment = os.environ | {"PYTHONPATH": str(package.parent)}
    lines = subprocess.run(
        [sys.executable, "-c", command], env=environment, capture_output=True, text=True, check=True
    ).stdout.split()
    assert lines[0] == str(package / "warmstart.py")
    assert lines[1] != server_key()


def test_a_socket_path_too_long_for_unix_runs_the_job_in_its_own_process(tmp_path, job_environment):
    deep = tmp_path / ("d" * 120)
    deep.mkdir()
    script = write_probe(tmp_path, 'print(json.dumps({"pid": os.getpid()}))')
    process = start_probe(script, job_environment | {"XDG_RUNTIME_DIR": str(deep)})
    output, _ = process.communicate(timeout=180)
    assert json.loads(output)["pid"] == process.pid


@pytest.fixture
def short_folder():
    """A folder near the root: a test's own folder can be too deep for a socket's path."""
    folder = Path(tempfile.mkdtemp(prefix="pq-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_server_that_fails_to_start_leaves_the_job_to_run_cold_at_once(
    tmp_path, job_environment, short_folder
):
    runtime = short_folder
    folder = runtime / f"prunequant-warm-{os.getuid()}"
    folder.mkdir(parents=True, mode=0o700)
    (folder / f"{server_key()}.sock").mkdir()  # a folder where the socket must go: binding fails
    script = write_probe(tmp_path, 'print(json.dumps({"pid": os.getpid()}))')
    started = time.monotonic()
    process = start_probe(script, job_environment | {"XDG_RUNTIME_DIR": str(runtime)})
    output, _ = process.communicate(timeout=180)
    assert json.loads(output)["pid"] == process.pid
    assert time.monotonic() - started < START_TIMEOUT_SECONDS / 2  # it did not wait out the timeout
    assert "Error" in (folder / f"{server_key()}.log").read_text()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_a_stopped_job_stops_its_worker(tmp_path, job_environment, signum):
    script = write_probe(
        tmp_path,
        """\
        import time
        print(os.getpid(), flush=True)
        time.sleep(120)
        """,
    )
    process = start_probe(script, job_environment)
    worker = int(process.stdout.readline())
    assert worker != process.pid
    process.send_signal(signum)
    assert process.wait(timeout=30) == -signum  # the job dies as its worker did, or as it was killed
    assert wait_until_gone(worker)


def test_a_jobs_own_exit_finalizers_still_run_in_a_worker(tmp_path, job_environment):
    script = write_probe(
        tmp_path,
        """\
        import tempfile
        folder = tempfile.TemporaryDirectory(dir=".")  # removed by its finalizer at exit
        print(json.dumps({"folder": folder.name, "pid": os.getpid()}))
        """,
    )
    process = start_probe(script, job_environment)
    seen = json.loads(process.communicate(timeout=180)[0])
    assert seen["pid"] != process.pid
    assert not Path(tmp_path, seen["folder"]).exists()


def test_a_warm_worker_computes_the_same_bytes_as_a_fresh_process(tmp_path, job_environment):
    script = write_probe(
        tmp_path,
        """\
        import hashlib
        import torch
        torch.set_num_threads(2)  # OpenMP's thread pool must start cleanly in a fork
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv1d(4, 8, 5, groups=4), torch.nn.ReLU(),
                                    torch.nn.Flatten(), torch.nn.Linear(8 * 60, 3))
        optimizer = torch.optim.Adam(model.parameters())
        inputs, labels = torch.randn(64, 4, 64), torch.randint(0, 3, (64,))
        for _ in range(20):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(inputs), labels).backward()
            optimizer.step()
        digest = hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in model.parameters()))
        print(json.dumps({"pid": os.getpid(), "digest": digest.hexdigest()}))
        """,
    )
    warm_process = start_probe(script, job_environment)
    warm = json.loads(warm_process.communicate(timeout=180)[0])
    cold_process = start_probe(script, job_environment | {SWITCH: "0"})
    cold = json.loads(cold_process.communicate(timeout=180)[0])
    assert warm["pid"] != warm_process.pid and cold["pid"] == cold_process.pid
    assert warm["digest"] == cold["digest"]


def test_an_idle_server_exits_and_removes_its_socket(tmp_path):
    # In its own process: a server forgets the library's modules after its preload.
    socket_path = tmp_path / "idle.sock"
    command = f"from prunequant.warmstart import serve; serve({str(socket_path)!r}, idle_seconds=0.2)"
    subprocess.run([sys.executable, "-c", command], check=True, timeout=120)
    assert not socket_path.exists()
    assert (tmp_path / "idle.lock").exists()


def test_start_server_leaves_one_listening_for_the_next_job(tmp_path, job_environment, monkeypatch):
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in job_environment.items():
        monkeypatch.setenv(name, value)
    assert start_server()
    assert list(Path(job_environment["XDG_RUNTIME_DIR"]).glob("prunequant-warm-*/*.sock"))
    script = write_probe(tmp_path, 'print(json.dumps({"preloaded": preloaded}))')
    assert json.loads(run_probe(script, job_environment).stdout)["preloaded"]["torch"] is True
    monkeypatch.setenv(SWITCH, "0")
    assert not start_server()
