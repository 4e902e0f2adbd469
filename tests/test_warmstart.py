"""Job scripts handed to a warm worker: the job's own process in every respect but its imports."""

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

import prunequant.workflow.jobs
from prunequant.workflow import process_state, warm_server
from prunequant.workflow.warmstart import (
    BATCH_SCHEDULERS,
    CONTAINER_RUNTIMES,
    START_TIMEOUT_SECONDS,
    SWITCH,
    WORKFLOW_CONTAINERS,
    server_key,
    start_server,
    warm_start_blocker,
    warm_start_enabled,
)

# What every probe script does first: note what its process had imported before the hand-over
# (a warm worker starts with torch, the exporter and, while unedited, the library imported).
PROBE_HEAD = """\
import json, os, sys
preloaded = {
    "torch": "torch" in sys.modules,
    "exporter": "torch.onnx._internal.exporter._core" in sys.modules,  # a WARM_START_IMPORTS entry
    "training": "prunequant.training" in sys.modules,
}
from prunequant.workflow.warmstart import continue_in_warm_process
continue_in_warm_process()
"""

# What a process sees of itself, read with the operating system's calls, not the library's.
SELF_REPORT = """\
import random, resource, tempfile
import numpy, threadpoolctl, torch
umask = os.umask(0)
os.umask(umask)
print(json.dumps({
    "pid": os.getpid(),
    "preloaded": preloaded,
    "cwd": os.getcwd(),
    "environment": dict(os.environ),
    "tempdir": tempfile.gettempdir(),
    "affinity": sorted(os.sched_getaffinity(0)),
    "umask": umask,
    "limits": {name: resource.getrlimit(getattr(resource, name)) for name in dir(resource)
               if name.startswith("RLIMIT_")},
    "niceness": os.getpriority(os.PRIO_PROCESS, 0),
    "uts": os.readlink("/proc/self/ns/uts"),
    "threads": {"torch": torch.get_num_threads(), "torch_interop": torch.get_num_interop_threads()},
    "pools": {pool["filepath"]: pool["num_threads"] for pool in threadpoolctl.threadpool_info()},
    "draws": {"random": random.random(), "numpy": numpy.random.random(), "torch": torch.rand(1).item()},
    "hash": hash("prunequant"),
}))
"""


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory):
    """A private folder for this module's warm servers; they are stopped afterwards."""
    folder = tmp_path_factory.mktemp("runtime")
    yield folder
    for log in folder.glob("prunequant-warm-*/*.log"):
        for pid in re.findall(r"pid (\d+) listening", log.read_text()):
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


def without_schedulers(environ) -> dict:
    """``environ`` without warm start's switch and anything a batch scheduler sets."""
    scheduler_variables = {name for scheduler in BATCH_SCHEDULERS for name in scheduler.variables}
    return {name: value for name, value in environ.items() if name not in scheduler_variables | {SWITCH}}


@pytest.fixture
def job_environment(runtime_dir):
    # On: this test may itself run inside a container (its jobs and servers share it).
    return without_schedulers(os.environ) | {SWITCH: "1", "XDG_RUNTIME_DIR": str(runtime_dir)}


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


def cold_and_warm(script: Path, environment: dict, settings: str, outer: tuple[str, ...] = ()) -> list[dict]:
    """What the probe sees in its own process, then in two warm workers, each run under ``settings``.

    One shell (under ``outer``) runs them all, after a job without ``settings`` or ``TMPDIR``
    that makes sure a server is listening: the workers' server was not started with what they compare.
    """
    python = f"{sys.executable} {script.name}"
    shell = f"""set -e
    export JOB_UTS=$(readlink /proc/self/ns/uts)
    env -u TMPDIR {python} > started.json
    ({settings} env {SWITCH}=0 {python}) > cold.json
    ({settings} env {SWITCH}=1 {python}) > warm.json
    ({settings} env {SWITCH}=1 {python}) > second_warm.json
    """
    finished = subprocess.run(
        [*outer, "bash", "-c", shell],
        cwd=script.parent,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr
    runs = [
        json.loads((script.parent / f"{run}.json").read_text()) for run in ("cold", "warm", "second_warm")
    ]
    assert [run["preloaded"]["torch"] for run in runs] == [False, True, True]
    return runs


def assert_the_worker_is_the_jobs_process(cold: dict, warm: dict, second_warm: dict) -> None:
    for key in ("cwd", "tempdir", "affinity", "umask", "limits", "niceness", "threads"):
        assert warm[key] == cold[key], key
    switch_aside = [{k: v for k, v in run["environment"].items() if k != SWITCH} for run in (cold, warm)]
    assert switch_aside[0] == switch_aside[1]
    # The worker has every pool a new process has, and more (the server's preload): same sizes.
    shared_pools = cold["pools"].keys() & warm["pools"].keys()
    assert shared_pools
    assert {path: warm["pools"][path] for path in shared_pools} == {
        path: cold["pools"][path] for path in shared_pools
    }
    for generator in ("random", "numpy", "torch"):  # a fresh random state, not a copy of the server's
        assert len({cold["draws"][generator], warm["draws"][generator], second_warm["draws"][generator]}) == 3


def test_a_worker_takes_on_the_cpus_umask_limits_and_thread_pools_the_caller_set(tmp_path, job_environment):
    script = write_probe(tmp_path, SELF_REPORT)
    (tmp_path / "tmp").mkdir()
    one_cpu = min(os.sched_getaffinity(0))
    thread_variables = {name for names in process_state.THREAD_POOL_VARIABLES.values() for name in names}
    environment = {name: value for name, value in job_environment.items() if name not in thread_variables}
    # Soft limits only: the module's server serves these jobs.
    settings = (
        f"umask 027; ulimit -S -n 1000; ulimit -S -s 4096; ulimit -S -t 3600; exec taskset -c {one_cpu}"
    )
    cold, warm, second_warm = cold_and_warm(script, environment | {"TMPDIR": str(tmp_path / "tmp")}, settings)
    assert_the_worker_is_the_jobs_process(cold, warm, second_warm)
    assert (
        warm["affinity"] == [one_cpu] and warm["umask"] == 0o027 and warm["tempdir"] == str(tmp_path / "tmp")
    )
    assert warm["limits"]["RLIMIT_NOFILE"][0] == 1000 and warm["threads"]["torch"] == 1
    assert set(warm["pools"].values()) == {1}


def unshare_works() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "-u", "true"]).returncode == 0


def test_a_job_with_other_hard_limits_niceness_hash_seed_or_namespace_gets_a_server_of_its_own(
    tmp_path, job_environment
):
    script = write_probe(tmp_path, SELF_REPORT)
    # Lowered hard limits and a raised niceness could not be taken on from the module's server;
    # a new UTS namespace, where `unshare` may make one, is another container's.
    outer = (*(("unshare", "-u") if unshare_works() else ()), "nice", "-n", "5", "prlimit", "--nofile=2048")
    environment = job_environment | {"PYTHONHASHSEED": "7", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "1"}
    settings = "umask 077; ulimit -S -s 4096;"
    cold, warm, second_warm = cold_and_warm(script, environment, settings, outer)
    assert_the_worker_is_the_jobs_process(cold, warm, second_warm)
    assert (
        warm["niceness"] == 5 and warm["limits"]["RLIMIT_NOFILE"] == [2048, 2048] and warm["umask"] == 0o077
    )
    assert warm["hash"] == cold["hash"]  # the job's hash seed
    # torch takes MKL's count; OpenBLAS OpenMP's, up to the CPUs there are
    assert warm["threads"]["torch"] == 1 and min(2, len(os.sched_getaffinity(0))) in warm["pools"].values()
    assert warm["uts"] == warm["environment"]["JOB_UTS"]  # the job's own namespace, unshared or not


def test_a_worker_imports_the_library_afresh_once_a_file_of_it_changed(tmp_path, job_environment):
    script = write_probe(tmp_path, 'print(json.dumps({"preloaded": preloaded}))')
    assert json.loads(run_probe(script, job_environment).stdout)["preloaded"]["training"] is True
    edited = Path(prunequant.workflow.jobs.__file__)
    before = edited.stat()
    try:
        os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # as an edit would
        seen = json.loads(run_probe(script, job_environment).stdout)["preloaded"]
        assert seen == {"torch": True, "exporter": True, "training": False}
    finally:
        os.utime(edited, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert json.loads(run_probe(script, job_environment).stdout)["preloaded"]["training"] is True


def test_a_server_retires_once_a_third_party_module_it_imported_changed(tmp_path, job_environment):
    # Python imports sitecustomize from the search path at start: a third-party module that only
    # this test's jobs, and so only their server (its key holds the search path), import.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("")
    environment = job_environment | {"PYTHONPATH": str(site)}
    script = write_probe(tmp_path, 'print(json.dumps({"pid": os.getpid()}))')

    def runs_warm() -> bool:
        process = start_probe(script, environment)
        return json.loads(process.communicate(timeout=180)[0])["pid"] != process.pid

    assert runs_warm()
    status = (site / "sitecustomize.py").stat()
    os.utime(site / "sitecustomize.py", ns=(status.st_atime_ns, status.st_mtime_ns + 10**9))
    assert not runs_warm()  # the job that finds the change runs in its own process
    logs = list(Path(job_environment["XDG_RUNTIME_DIR"]).glob("prunequant-warm-*/*.log"))
    assert any("third-party library changed" in log.read_text() for log in logs)
    assert runs_warm()  # the next one starts a server that imported the module as it is now


@pytest.mark.parametrize(
    "body, code, stderr",
    [
        ("sys.exit(3)", 3, ""),
        ("sys.exit('bad input')", 1, "bad input\n"),
        ("raise ValueError('broken')", 1, "ValueError: broken"),
        (
            """\
            from prunequant.errors import UserError
            from prunequant.workflow.jobs import job_logging
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


def test_warm_start_is_off_under_every_batch_scheduler_and_container_runtime(tmp_path):
    assert warm_start_enabled({}, root=tmp_path)
    for scheduler in BATCH_SCHEDULERS:
        for name in scheduler.variables:
            blocker = warm_start_blocker({name: "42"}, root=tmp_path)
            assert blocker == f"a {scheduler.name} job"
            assert warm_start_blocker({name: "42", SWITCH: "1"}, root=tmp_path) == blocker  # always
    for runtime in CONTAINER_RUNTIMES:
        for name in runtime.variables:
            assert runtime.name in warm_start_blocker({name: "docker"}, root=tmp_path)
            assert warm_start_enabled({name: "docker", SWITCH: "1"}, root=tmp_path)
        for path in runtime.files:
            marked = tmp_path / runtime.name.replace("/", "-")
            (marked / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (marked / path.lstrip("/")).touch()
            assert runtime.name in warm_start_blocker({}, root=marked)
            assert warm_start_enabled({SWITCH: "yes"}, root=marked)
    names = {runtime.name for runtime in (*BATCH_SCHEDULERS, *CONTAINER_RUNTIMES)}
    for named in ("SLURM", "LSF", "PBS/Torque", "SGE/UGE", "HTCondor", "Flux", "Apptainer/Singularity"):
        assert named in names
    assert not warm_start_enabled({SWITCH: "0"}, root=tmp_path)


def test_a_container_the_whole_workflow_runs_in_keeps_warm_start_and_the_key_guards_it(tmp_path):
    """Docker or Podman hold Snakemake and its jobs alike: warm start stays on there, and the
    server key's cgroup and namespaces keep a job from another container off this server."""
    for runtime in WORKFLOW_CONTAINERS:
        marked = tmp_path / runtime.name.replace(" ", "-")
        for path in runtime.files:
            (marked / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
            (marked / path.lstrip("/")).touch()
        environ = {name: "podman" for name in runtime.variables}
        assert runtime.is_here(environ, marked)
        assert warm_start_enabled(environ, root=marked)
        assert not warm_start_enabled({**environ, SWITCH: "0"}, root=marked)
    assert {runtime.name for runtime in WORKFLOW_CONTAINERS} >= {"Docker", "Podman"}


@pytest.mark.parametrize(
    "setting",
    [
        {SWITCH: "0"},
        {SWITCH: "false"},
        {"SLURM_JOB_ID": "4242"},
        {"LSB_JOBID": "7"},
        {SWITCH: "", "APPTAINER_CONTAINER": "/images/study.sif"},
    ],
    ids=["off", "false", "slurm", "lsf", "apptainer"],
)
def test_switched_off_or_under_a_scheduler_the_job_runs_in_its_own_process(
    tmp_path, job_environment, setting
):
    script = write_probe(tmp_path, 'print(json.dumps({"pid": os.getpid(), "preloaded": preloaded}))')
    process = start_probe(script, job_environment | setting)
    output, _ = process.communicate(timeout=180)
    seen = json.loads(output)
    assert seen["pid"] == process.pid
    assert seen["preloaded"]["torch"] is False


def test_a_connection_from_another_cgroup_or_namespace_is_refused(monkeypatch):
    server_end, job_end = socket.socketpair()
    with server_end, job_end:
        assert warm_server._refusal(server_end) is None  # its peer is this very process
        here = process_state.placement()
        monkeypatch.setattr(
            process_state, "placement", lambda pid="self": here if pid == "self" else "elsewhere"
        )
        assert "another cgroup or namespace" in warm_server._refusal(server_end)


def test_a_job_whose_attributes_its_worker_cannot_take_on_runs_in_its_own_process(tmp_path, job_environment):
    # As a user without privileges finds it when a limit would have to rise: here the refusal is
    # faked by a sitecustomize module on the search path, which the server imports at its start.
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "from prunequant.workflow import process_state\n"
        "process_state.adopt = lambda job: 'refused for this test'\n"
    )
    script = write_probe(tmp_path, 'print(json.dumps({"pid": os.getpid(), "preloaded": preloaded}))')
    process = start_probe(script, job_environment | {"PYTHONPATH": str(site)})
    seen = json.loads(process.communicate(timeout=180)[0])
    assert seen == {"pid": process.pid, "preloaded": {"torch": False, "exporter": False, "training": False}}
    logs = Path(job_environment["XDG_RUNTIME_DIR"]).glob("prunequant-warm-*/*.log")
    assert any("runs in its own process: refused for this test" in log.read_text() for log in logs)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"affinity": (10**6,)}, "Invalid argument"),
        ({"limits": {"RLIMIT_NOFILE": (64, 32)}}, "limit"),  # soft above hard
    ],
    ids=["cpu", "limit"],
)
def test_attributes_a_worker_cannot_take_on_leave_the_job_to_its_own_process(change, words):
    # In a process of its own: taking the attributes on changes the process that does it.
    code = f"""
import dataclasses
from prunequant.workflow import process_state
job = dataclasses.replace(process_state.JobAttributes.of_this_process(), **{change!r})
print(process_state.adopt(job))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("cannot take on the job's process attributes") and words in result.stdout


def test_a_runtime_folder_open_to_others_is_not_used(tmp_path, job_environment):
    shared = tmp_path / "shared"
    (shared / f"prunequant-warm-{os.getuid()}").mkdir(parents=True, mode=0o777)
    (shared / f"prunequant-warm-{os.getuid()}").chmod(0o777)
    script = write_probe(tmp_path, 'print(json.dumps({"pid": os.getpid()}))')
    process = start_probe(script, job_environment | {"XDG_RUNTIME_DIR": str(shared)})
    output, _ = process.communicate(timeout=180)
    assert json.loads(output)["pid"] == process.pid
    assert not list(shared.rglob("*.sock"))


def test_another_checkout_of_the_library_gets_its_own_server(tmp_path, monkeypatch):
    # The same files, elsewhere, in this same process: only where they are differs.
    copy = tmp_path / "checkout" / "prunequant" / "workflow"
    copy.mkdir(parents=True)
    for name in ("warmstart.py", "warm_server.py", "process_state.py"):
        (copy / name).write_bytes((Path(warm_server.__file__).parent / name).read_bytes())
    spec = importlib.util.spec_from_file_location("warmstart_elsewhere", copy / "warmstart.py")
    elsewhere = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, elsewhere)  # where its dataclasses look themselves up
    spec.loader.exec_module(elsewhere)
    assert elsewhere.server_key() != server_key()


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


def job_server_key(environment: dict) -> str:
    """The key a job started with ``environment`` computes (a test process's search path differs)."""
    command = "from prunequant.workflow.warmstart import server_key; print(server_key())"
    finished = subprocess.run(
        [sys.executable, "-c", command], env=environment, capture_output=True, text=True
    )
    return finished.stdout.strip()


def test_a_server_that_fails_to_start_leaves_the_job_to_run_cold_at_once(
    tmp_path, job_environment, short_folder
):
    environment = job_environment | {"XDG_RUNTIME_DIR": str(short_folder)}
    folder = short_folder / f"prunequant-warm-{os.getuid()}"
    folder.mkdir(parents=True, mode=0o700)
    key = job_server_key(environment)
    (folder / f"{key}.sock").mkdir()  # a folder where the socket must go: binding fails
    script = write_probe(tmp_path, 'print(json.dumps({"pid": os.getpid()}))')
    started = time.monotonic()
    process = start_probe(script, environment)
    output, _ = process.communicate(timeout=180)
    assert json.loads(output)["pid"] == process.pid
    assert time.monotonic() - started < START_TIMEOUT_SECONDS / 2  # it did not wait out the timeout
    assert "Error" in (folder / f"{key}.log").read_text()


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
    command = (
        f"from prunequant.workflow.warm_server import serve; serve({str(socket_path)!r}, idle_seconds=0.2)"
    )
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
