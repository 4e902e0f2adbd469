"""Run a workflow job in a process forked from one that has already imported the libraries.

Importing torch takes about as long as most stages of the default study run. Snakemake starts
one fresh interpreter per job and its job groups are ignored in local runs, so every job script
begins with::

    from prunequant.workflow.warmstart import continue_in_warm_process

    continue_in_warm_process()

On a local run that call hands the script to a *warm server* (:mod:`.warm_server`): a process
that imported torch, ONNX Runtime, pandas and the rest once and then waits on a Unix socket. For
each job it forks a supervisor, which forks the worker that runs the whole job script again
(Snakemake's preamble included) as the job's process would: with its folder, environment,
arguments, standard streams, CPU affinity, umask, resource limits, niceness, thread pool sizes and
a fresh random state. The job's own process waits and exits with the worker's status; Snakemake
still decides which job runs when, with how many threads, and a signal sent to the job reaches the
worker. Without a server, or when anything goes wrong before the worker starts, the call returns
and the script runs in its own process as before. With a worker, Snakemake's benchmark files
measure the waiting job process: wall time stays true, memory and CPU columns do not, which is why
:func:`.jobs.job_logging` logs the worker's own peak memory.

A server serves only the jobs it can make its own (the *key* in its socket's name): the same
interpreter, interpreter options, hash seed and module search path, the same checkout of this
library and version of the warm start's code, the same cgroup and namespaces, and the same hard
resource limits and niceness, the two attributes a worker without privileges cannot always take
on (:mod:`.process_state`). Jobs with another key get a server of their own.

It is off, and the job runs in its own process, under a batch scheduler (a worker would run
outside the job's allocation) and inside a container that a job gets of its own (Apptainer or
Singularity, which ``--sdm apptainer`` starts per job; a Kubernetes pod): a server there would
be started for one job only, and one elsewhere would run it with another file system and other
libraries. Each is recognised by what it sets: see :data:`BATCH_SCHEDULERS` and
:data:`CONTAINER_RUNTIMES`. Inside a container that the whole workflow runs in (Docker, Podman,
systemd-nspawn: :data:`WORKFLOW_CONTAINERS`, as on a CI machine) it stays on: the cgroup and
namespace checks keep every job to a server of its own container, and a job started in another
container or cgroup runs cold. ``PRUNEQUANT_WARM_START=0`` turns it off anywhere;
``PRUNEQUANT_WARM_START=1`` turns it on in a job container too (never under a batch scheduler).

This module and :mod:`.process_state` import only the standard library: every job's own
process imports them.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from prunequant.workflow import process_state

__all__ = [
    "BATCH_SCHEDULERS",
    "CONTAINER_RUNTIMES",
    "WORKFLOW_CONTAINERS",
    "continue_in_warm_process",
    "server_key",
    "start_server",
    "warm_start_blocker",
    "warm_start_enabled",
]

SWITCH = "PRUNEQUANT_WARM_START"
_OFF = {"0", "false", "no", "off"}
_ON = {"1", "true", "yes", "on"}
# How long a job waits for a server it started to listen; past it, the job runs cold.
START_TIMEOUT_SECONDS = 60.0
# The files whose code a server runs: a server whose code changed is not reused.
_SERVER_FILES = ("warmstart.py", "warm_server.py", "process_state.py")
# Set in a worker's environment so that the script's own call returns there; removed at once.
WORKER_MARK = "_PRUNEQUANT_WARM_WORKER"
_FORWARDED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
_LENGTH = struct.Struct("!Q")
_SERVER_COMMAND = "import sys; from prunequant.workflow.warm_server import serve; serve(sys.argv[1])"


@dataclass(frozen=True)
class Runtime:
    """A batch scheduler or container runtime, known by the variables or files it leaves."""

    name: str
    variables: tuple[str, ...] = ()
    files: tuple[str, ...] = ()  # absolute paths

    def is_here(self, environ: Mapping[str, str], root: Path) -> bool:
        if any(environ.get(name) for name in self.variables):
            return True
        return any((root / path.lstrip("/")).exists() for path in self.files)


# A job of these runs in an allocation of its own (CPUs, memory, time), which a worker forked
# from a server outside it would escape.
BATCH_SCHEDULERS = (
    Runtime("SLURM", ("SLURM_JOB_ID", "SLURM_JOBID")),
    Runtime("LSF", ("LSB_JOBID",)),
    Runtime("PBS/Torque", ("PBS_JOBID",)),
    Runtime("SGE/UGE", ("SGE_JOB_SPOOL_DIR", "SGE_O_WORKDIR")),
    Runtime("HTCondor", ("_CONDOR_JOB_AD", "_CONDOR_SCRATCH_DIR")),
    Runtime("Flux", ("FLUX_JOB_ID", "FLUX_URI")),
)
# These give a job a container of its own that may share /tmp or $HOME with the host: a server
# outside it would run the job with another file system and other libraries, and one inside it
# would serve a single job.
CONTAINER_RUNTIMES = (
    Runtime("Apptainer/Singularity", ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER"), ("/.singularity.d",)),
    Runtime("Kubernetes", ("KUBERNETES_SERVICE_HOST",)),
)
# These hold the whole workflow, Snakemake and its jobs alike (Snakemake starts no Docker or Podman
# container per job): a server started by the first job shares every job's file system, and the
# key's cgroup and namespaces send a job from any other container to a server of its own.
WORKFLOW_CONTAINERS = (
    Runtime("Docker", files=("/.dockerenv",)),
    Runtime("Podman", files=("/run/.containerenv",)),
    # systemd's convention, which Podman, LXC and systemd-nspawn follow
    Runtime("a container", ("container",)),
)


def warm_start_blocker(environ: Mapping[str, str] = os.environ, root: Path = Path("/")) -> str | None:
    """Why a job in this environment must run in its own process, or None when it may be handed on.

    ``root``: where the container runtimes' marker files are looked for.
    """
    switch = environ.get(SWITCH, "").strip().lower()
    if switch in _OFF:
        return f"{SWITCH}={environ[SWITCH]}"
    if not (sys.platform.startswith("linux") and hasattr(socket, "send_fds")):
        return "warm start needs Linux"
    for scheduler in BATCH_SCHEDULERS:
        if scheduler.is_here(environ, root):
            return f"a {scheduler.name} job"
    if switch not in _ON:
        for runtime in CONTAINER_RUNTIMES:
            if runtime.is_here(environ, root):
                return f"inside a {runtime.name} container of the job's own ({SWITCH}=1 to run warm anyway)"
    return None


def warm_start_enabled(environ: Mapping[str, str] = os.environ, root: Path = Path("/")) -> bool:
    """Whether a job in this environment may hand itself to a warm server."""
    return warm_start_blocker(environ, root) is None


def continue_in_warm_process() -> None:
    """Hand the rest of this job script to a warm worker and exit with its status, or return.

    Returns in the worker itself, when warm start is off, and when no worker could be started;
    the script then simply goes on in this process.
    """
    if os.environ.pop(WORKER_MARK, None) is not None or not warm_start_enabled():
        return
    try:
        connection = _connect_or_start_server()
    except OSError:
        return
    if connection is None:
        return
    try:
        worker = _start_worker(connection)
    except OSError:
        worker = None
    if worker is None:
        # Closing tells the supervisor to stop a worker it may have started; nothing of the
        # job has run in one that it could not report, so the job runs here instead.
        connection.close()
        return
    _wait_for_worker(connection, worker)


def start_server() -> bool:
    """Start this environment's warm server unless one is listening; whether one is now.

    For benchmarks that must not charge the server's preload to whichever run comes first.
    """
    if not warm_start_enabled():
        return False
    try:
        connection = _connect_or_start_server()
    except OSError:
        return False
    if connection is None:
        return False
    connection.close()  # its supervisor finds no job and exits
    return True


# --- finding the server --------------------------------------------------------------------


def _runtime_dir() -> Path | None:
    """A folder only this user can use, or None when there is none to be had."""
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    folder = Path(base) / f"prunequant-warm-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        status = folder.stat()
    except OSError:
        return None
    if status.st_uid != os.getuid() or status.st_mode & 0o077:
        return None  # someone else's, or open to others: a socket there could be hijacked
    return folder


def server_key() -> str:
    """Names the server that can serve this job: see the module's docstring for what it covers."""
    digest = hashlib.sha256()
    digest.update(f"{os.path.realpath(sys.executable)}\0{sys.prefix}\0{sys.version}\0".encode())
    # A fork keeps the interpreter's options and its hash seed (PYTHONHASHSEED); a job that set
    # one gets a server started with it rather than running cold, since a workflow that sets it
    # sets it for every job.
    digest.update(f"{sys.flags}\0{os.environ.get('PYTHONHASHSEED', 'random')}\0".encode())
    # Where imports are looked for (PYTHONPATH, site-packages), but for the script's own folder.
    search_path = sys.path if sys.flags.safe_path else sys.path[1:]
    digest.update("\0".join(search_path).encode())
    # Where this library lives: two checkouts sharing an environment must not share a server,
    # whose workers keep the library it imported.
    here = Path(__file__).resolve().parent
    digest.update(f"{here}\0".encode())
    for name in _SERVER_FILES:
        digest.update((here / name).read_bytes())
    digest.update(process_state.placement().encode())
    digest.update(process_state.unraisable_attributes().encode())
    return digest.hexdigest()[:20]


# A Unix socket's path must fit in sockaddr_un's 108 bytes, its final NUL included.
_MAX_SOCKET_PATH_BYTES = 107


def _socket_path() -> Path | None:
    folder = _runtime_dir()
    if folder is None:
        return None
    path = folder / f"{server_key()}.sock"
    return path if len(os.fsencode(path)) <= _MAX_SOCKET_PATH_BYTES else None


def _server_alive(path: Path) -> bool:
    """Whether a server for ``path`` holds its lock: it is starting or listening."""
    try:
        with open(path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    return False  # the lock was free (and is released again on close)


def _connect(path: Path) -> socket.socket | None:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(str(path))
    except OSError:
        connection.close()
        return None
    return connection


def _connect_or_start_server() -> socket.socket | None:
    path = _socket_path()
    if path is None:
        return None
    connection = _connect(path)
    if connection is not None:
        return connection
    server = _spawn_server(path)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        connection = _connect(path)
        if connection is not None:
            return connection
        if server.poll() is not None and not _server_alive(path):
            # Ours exited and no other holds the lock: it failed (its log, next to the socket,
            # says why), and waiting longer would only delay the job.
            return None
        time.sleep(0.02)
    return None


def _spawn_server(path: Path) -> subprocess.Popen:
    package_parent = str(Path(__file__).resolve().parents[2])
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, environment.get("PYTHONPATH")]))
    # Thread pools read their size once, when their library loads: the server's libraries start
    # with their full size, and each worker sets the sizes its own job's environment asks for.
    for variables in process_state.THREAD_POOL_VARIABLES.values():
        for name in variables:
            environment.pop(name, None)
    # The interpreter options of this job (-O, -X ...), which the server's workers then have.
    options = subprocess._args_from_interpreter_flags()
    log = open(path.with_suffix(".log"), "ab")  # noqa: SIM115 -- handed to the server process
    try:
        return subprocess.Popen(
            [sys.executable, *options, "-c", _SERVER_COMMAND, str(path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd="/",
            env=environment,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        log.close()


# --- the job's side of a warm start ----------------------------------------------------------


def _start_worker(connection: socket.socket) -> int | None:
    """Send the job and its standard streams; the worker's pid, or None if none started."""
    request = {
        "script": sys.argv[0],  # as given: the worker starts in the same folder
        "argv": list(sys.argv),
        "cwd": os.getcwd(),
        "path": list(sys.path),
        "environment": dict(os.environ),
        "attributes": process_state.JobAttributes.of_this_process(),
    }
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    socket.send_fds(connection, [b"\0"], [0, 1, 2])
    send_message(connection, request)
    reply = receive_message(connection)
    return None if reply is None else reply.get("worker")


def _wait_for_worker(connection: socket.socket, worker: int) -> None:
    def forward(signum, _frame):
        try:
            os.kill(worker, signum)
        except ProcessLookupError:
            pass

    for signum in _FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    reply = receive_message(connection)
    if reply is None:
        message = "prunequant: error: the warm worker process ended without a status"
        print(message, file=sys.stderr, flush=True)
        os._exit(1)
    status = reply["status"]
    if os.WIFSIGNALED(status):
        # Die of the same signal, so that Snakemake sees what the worker saw.
        signum = os.WTERMSIG(status)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


# --- messages ------------------------------------------------------------------------------


def send_message(connection: socket.socket, message: dict) -> None:
    payload = pickle.dumps(message)
    connection.sendall(_LENGTH.pack(len(payload)) + payload)


def _receive_exactly(connection: socket.socket, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = connection.recv(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive_message(connection: socket.socket) -> dict | None:
    """The next message, or None when the other side has closed the connection."""
    header = _receive_exactly(connection, _LENGTH.size)
    if header is None:
        return None
    payload = _receive_exactly(connection, _LENGTH.unpack(header)[0])
    return None if payload is None else pickle.loads(payload)
