"""Run a workflow job in a process forked from one that has already imported the libraries.

Importing torch takes about two seconds here; most stages of the default study take two to five.
Paid once per job, the imports were 41% of the study's summed job time
(``bench/results/overhead.txt``). Snakemake starts one fresh interpreter per job and its job
groups are ignored in local runs, so every job script begins with::

    from prunequant.warmstart import continue_in_warm_process

    continue_in_warm_process()

On a local run that call hands the script to a *warm server*: a process, one per Python
environment, checkout of this library and user, that imported torch, ONNX Runtime, pandas and
the rest once and then waits on a Unix socket. For each job it forks a supervisor, which forks
the worker that runs the whole job script again (Snakemake's preamble included) with the job's
working directory, environment, arguments and standard streams, while the job's own process
waits and exits with the worker's status. Snakemake still decides which job runs when, with how
many threads: the job process lasts exactly as long as its work, and a signal sent to it is
passed on to the worker. Without a server, or when anything goes wrong before the worker starts,
the call returns and the script runs in its own process as before.

The server imports what the workflow's scripts import (read off their text, as the code
digests of ``prunequant.sources`` are) and all that follows. A worker keeps this
library's modules only while every one of their files is as the server found it (same size and
modification time); after any edit it forgets them all and imports the library from disk, so an
edit takes effect at the next job. A server whose own code or third-party libraries changed is
not reused: its socket name is a digest of this file, the interpreter and the libraries' install
times. It exits after ``IDLE_SECONDS`` without a job.

It is off when ``PRUNEQUANT_WARM_START=0`` and on SLURM (``SLURM_JOB_ID`` set): a worker forked
from a server outside the job's allocation would escape its CPU and memory limits. Snakemake's
benchmark files then measure the waiting job process: wall time stays true, memory and CPU
columns do not, which is why ``job_logging`` logs the worker's own peak memory.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import importlib
import importlib.util
import os
import pickle
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import weakref
from collections.abc import Mapping
from pathlib import Path

__all__ = ["continue_in_warm_process", "serve", "start_server", "warm_start_enabled"]

SWITCH = "PRUNEQUANT_WARM_START"
IDLE_SECONDS = 120.0
# How long a job waits for a server it started to listen; past it, the job runs cold.
START_TIMEOUT_SECONDS = 60.0
# The workflow's job scripts, next to the package in a checkout: a server imports what they import.
SCRIPTS_DIR = Path(__file__).resolve().parents[2] / "scripts"
# What Snakemake's script preamble imports in every job.
PREAMBLE_MODULE = "snakemake.script"
# Third-party packages whose reinstallation must retire a running server.
LIBRARIES = ("torch", "torch_pruning", "onnx", "onnxruntime", "numpy", "pandas", "matplotlib", "snakemake")
# Set in a worker's environment so that the script's own call returns there; removed at once.
_WORKER_MARK = "_PRUNEQUANT_WARM_WORKER"
_FORWARDED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)
_LENGTH = struct.Struct("!Q")
_SERVER_COMMAND = "import sys; from prunequant.warmstart import serve; serve(sys.argv[1])"


def warm_start_enabled(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether a job in this environment may hand itself to a warm server."""
    if environ.get(SWITCH, "1").strip().lower() in {"0", "false", "no", "off"}:
        return False
    if environ.get("SLURM_JOB_ID"):
        return False
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


def continue_in_warm_process() -> None:
    """Hand the rest of this job script to a warm worker and exit with its status, or return.

    Returns in the worker itself, when warm start is off, and when no worker could be started;
    the script then simply goes on in this process.
    """
    if os.environ.pop(_WORKER_MARK, None) is not None or not warm_start_enabled():
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


# --- the job's side ------------------------------------------------------------------------


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
    """Names the server that fits this interpreter, this checkout of the library and the libraries."""
    digest = hashlib.sha256()
    digest.update(f"{os.path.realpath(sys.executable)}\0{sys.prefix}\0{sys.version}\0".encode())
    # Where this library lives: two checkouts sharing an environment must not share a server,
    # whose workers keep the library it imported.
    digest.update(f"{os.path.realpath(__file__)}\0".encode())
    digest.update(Path(__file__).read_bytes())
    for name in LIBRARIES:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        if origin and os.path.exists(origin):
            status = os.stat(origin)
            digest.update(f"{name}\0{origin}\0{status.st_mtime_ns}\0{status.st_size}\0".encode())
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
    package_parent = str(Path(__file__).resolve().parents[1])
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, environment.get("PYTHONPATH")]))
    # The OpenMP runtime reads its thread count once, when torch loads it; each worker sets the
    # count from its own job's environment instead.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        environment.pop(name, None)
    log = open(path.with_suffix(".log"), "ab")  # noqa: SIM115 -- handed to the server process
    try:
        return subprocess.Popen(
            [sys.executable, "-c", _SERVER_COMMAND, str(path)],
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


def _start_worker(connection: socket.socket) -> int | None:
    """Send the job and its standard streams; the worker's pid, or None if none started."""
    request = {
        "script": sys.argv[0],  # as given: the worker starts in the same folder
        "argv": list(sys.argv),
        "cwd": os.getcwd(),
        "path": list(sys.path),
        "environment": dict(os.environ),
    }
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    socket.send_fds(connection, [b"\0"], [0, 1, 2])
    _send(connection, request)
    reply = _receive(connection)
    return None if reply is None else reply["worker"]


def _wait_for_worker(connection: socket.socket, worker: int) -> None:
    def forward(signum, _frame):
        try:
            os.kill(worker, signum)
        except ProcessLookupError:
            pass

    for signum in _FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    reply = _receive(connection)
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


def _send(connection: socket.socket, message: dict) -> None:
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


def _receive(connection: socket.socket) -> dict | None:
    """The next message, or None when the other side has closed the connection."""
    header = _receive_exactly(connection, _LENGTH.size)
    if header is None:
        return None
    payload = _receive_exactly(connection, _LENGTH.unpack(header)[0])
    return None if payload is None else pickle.loads(payload)


# --- the server's side ---------------------------------------------------------------------


def _library_modules() -> list[str]:
    return [name for name in sys.modules if name == "prunequant" or name.startswith("prunequant.")]


# prunequant.sources.file_version's twin: every job's own process imports this module, which
# imports nothing but the standard library (the server loads prunequant.sources only to preload).
def _file_state(path: str) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_mtime_ns, status.st_size


# The file, modification time and size of every library module the server imported.
_preloaded_library: dict[str, tuple[str, int, int]] = {}


def _preload() -> None:
    """Import what the job scripts import; note the state of the library's files.

    A job module may also name, in ``WARM_START_IMPORTS``, modules its functions import only
    when they run (the ONNX exporter's); those are imported too.
    """
    from prunequant.sources import script_imports

    package_dir = Path(__file__).resolve().parent
    library = {name for script in SCRIPTS_DIR.glob("*.py") for name in script_imports(script, package_dir)}
    names = [PREAMBLE_MODULE, *sorted(library)]
    while names:
        name = names.pop(0)
        try:
            module = importlib.import_module(name)
        except Exception:  # a module that cannot load here will say so in its own job
            traceback.print_exc()
            continue
        names.extend(getattr(module, "WARM_START_IMPORTS", ()))
    for name in _library_modules():
        path = getattr(sys.modules[name], "__file__", None)
        if path:
            _preloaded_library[name] = (path, *_file_state(path))


def _library_unchanged() -> bool:
    """Whether every library file the server imported is still as it was then."""
    try:
        return all(_file_state(path) == (mtime, size) for path, mtime, size in _preloaded_library.values())
    except OSError:
        return False


def serve(socket_path: str, idle_seconds: float = IDLE_SECONDS) -> None:
    """Listen on ``socket_path`` and fork one supervised worker per job until idle."""
    path = Path(socket_path)
    lock = open(path.with_suffix(".lock"), "w")  # noqa: SIM115 -- held for the server's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server for this key is starting or running
    _preload()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        # CUDA cannot be used in a fork of a process that set it up; jobs then run cold.
        print("CUDA was set up while preloading; not serving", flush=True)
        return
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    listener.settimeout(idle_seconds)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} pid {os.getpid()} listening on {path}", flush=True)
    try:
        while True:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                break
            connection.settimeout(None)
            if os.fork() == 0:
                listener.close()
                lock.close()
                _supervise(connection)  # never returns
            connection.close()
    finally:
        path.unlink(missing_ok=True)
        listener.close()
        lock.close()


def _supervise(connection: socket.socket) -> None:
    """In a fork of the server: start the worker, report its pid and then its exit status."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _, fds, _, _ = socket.recv_fds(connection, 1, 3)  # one byte: nothing of the next message
        request = _receive(connection)
        if request is None or len(fds) != 3:
            os._exit(1)
        worker = os.fork()
        if worker == 0:
            connection.close()
            _run_worker(request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        try:
            _send(connection, {"worker": worker})
        except OSError:
            os.kill(worker, signal.SIGKILL)  # the job gave up waiting and runs on its own
            raise

        def stop_worker_if_job_is_gone():
            # The job's process never closes the connection while it waits: an end of stream
            # means it was killed, and its worker must not go on writing its outputs.
            try:
                if connection.recv(1) == b"":
                    os.kill(worker, signal.SIGKILL)
            except OSError:
                pass

        threading.Thread(target=stop_worker_if_job_is_gone, daemon=True).start()
        _, status = os.waitpid(worker, 0)
        _send(connection, {"status": status})
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(0)


def _run_worker(request: dict, fds: list[int]) -> None:
    """In the worker: become the job's process and run its script; exit with its status."""
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.setsid()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["environment"])
        os.environ[_WORKER_MARK] = "1"
        sys.argv = request["argv"]
        sys.path[:] = request["path"]
        if not _library_unchanged():
            # Edited since the server imported it: the script imports the library afresh, from
            # disk, as a new process would.
            for name in _library_modules():
                del sys.modules[name]
        _apply_thread_settings()
        _skip_servers_exit_finalizers()
        code = _run_script(request["script"])
    except BaseException:
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)


def _skip_servers_exit_finalizers() -> None:
    """Keep the finalizers the server's imports made from running again at the worker's exit.

    torch gives each operator library it defines a finalizer that deregisters its operators at
    exit: about 190 after the preload, 40 ms of every worker's exit, for a process that ends
    anyway. Finalizers the job itself makes (a temporary folder's, say) still run at exit.
    """
    for finalizer in list(getattr(weakref.finalize, "_registry", {})):
        finalizer.atexit = False


def _apply_thread_settings() -> None:
    """Give torch the thread count this job's environment asks for, as a fresh process would."""
    torch = sys.modules.get("torch")
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if torch is not None and threads.isdigit() and int(threads) > 0:
        torch.set_num_threads(int(threads))


def _run_script(script: str) -> int:
    """Run ``script`` as ``__main__`` and return the exit code Python itself would give."""
    import runpy

    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exit_:
        if exit_.code is None:
            code = 0
        elif isinstance(exit_.code, int):
            code = exit_.code
        else:
            print(exit_.code, file=sys.stderr)
            code = 1
    except KeyboardInterrupt:
        traceback.print_exc()
        code = 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    return code
