"""The warm server: the libraries imported once, then one forked worker per job.

The server imports what the workflow's scripts import (read off their code, as the code digests
of :mod:`.code_digests` are) and all that follows, then listens on its socket until it has been
idle for ``IDLE_SECONDS``. For each job it forks a *supervisor*, which checks that the job shares
the server's cgroup and namespaces, takes on the job's process attributes and forks the *worker*
that becomes the job's process and runs its script.

What a worker gets from the server and must not keep, it resets:

- this library: kept only while every one of its files is as the server found it (same size and
  modification time); after any edit the worker imports it afresh from disk, as a new process;
- the third-party libraries: the server notes the file of every module it imported outside the
  standard library and this library, and retires (the job runs in its own process, the next job
  starts a new server) once any of them changed;
- the random state: Python's, numpy's and torch's global generators are seeded afresh per
  worker, from the operating system's entropy as in a new process. The hash seed cannot change
  after start: a job that sets ``PYTHONHASHSEED`` gets a server started with it (the server key
  holds it), and without it every worker of one server shares that server's random seed;
- the thread pools: torch's, and OpenMP's, OpenBLAS's and MKL's through threadpoolctl, sized as
  a new process with the job's environment and CPUs would size them.
"""

from __future__ import annotations

import atexit
import fcntl
import importlib
import os
import random
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import traceback
import weakref
from pathlib import Path

import threadpoolctl

from prunequant.workflow import process_state
from prunequant.workflow.warmstart import WORKER_MARK, receive_message, send_message

__all__ = ["IDLE_SECONDS", "serve"]

IDLE_SECONDS = 120.0
# The workflow's job scripts, beside the package in a checkout: the server imports what they import.
SCRIPTS_DIR = Path(__file__).resolve().parents[3] / "scripts"
PACKAGE_DIR = Path(__file__).resolve().parents[1]
# What Snakemake's script preamble imports in every job.
PREAMBLE_MODULE = "snakemake.script"
_PEER_CREDENTIALS = struct.Struct("3i")  # pid, uid, gid


def serve(socket_path: str, idle_seconds: float = IDLE_SECONDS) -> None:
    """Listen on ``socket_path`` and fork one supervised worker per job until idle or stale."""
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
    _log(f"pid {os.getpid()} listening on {path}")
    try:
        while True:
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                break
            if not _files_unchanged(_third_party_files):
                # Closing without a reply runs this job cold; with the socket gone, the next
                # job starts a server that imports the libraries as they are now.
                _log("a third-party library changed since the preload; retiring")
                connection.close()
                break
            connection.settimeout(None)
            if os.fork() == 0:
                listener.close()
                lock.close()
                _supervise(connection)  # never returns
            connection.close()
    finally:
        # In this order: the lock is what lets a new server bind a socket at the same path.
        path.unlink(missing_ok=True)
        listener.close()
        lock.close()


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


# --- what the server imported -----------------------------------------------------------------

# The modification time and size of each module file the server imported: this library's, whose
# change makes a worker import the library afresh, and the others outside the standard library,
# whose change retires the server.
_library_files: dict[str, tuple[int, int]] = {}
_third_party_files: dict[str, tuple[int, int]] = {}
# The thread pools of the libraries the preload loaded, and what threadpoolctl says of each.
_thread_pools: threadpoolctl.ThreadpoolController | None = None
_thread_pool_libraries: list[dict] = []


def _file_state(path: str) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_mtime_ns, status.st_size


def _files_unchanged(files: dict[str, tuple[int, int]]) -> bool:
    try:
        return all(_file_state(path) == state for path, state in files.items())
    except OSError:
        return False


def _library_modules() -> list[str]:
    return [name for name in sys.modules if name == "prunequant" or name.startswith("prunequant.")]


def _preload() -> None:
    """Import what the job scripts import; note the state of every imported module's file.

    A job module may also name, in ``WARM_START_IMPORTS``, modules its functions import only
    when they run (the ONNX exporter's); those are imported too.
    """
    global _thread_pools
    from prunequant.workflow.code_digests import script_imports

    library = {name for script in SCRIPTS_DIR.glob("*.py") for name in script_imports(script, PACKAGE_DIR)}
    names = [PREAMBLE_MODULE, *sorted(library)]
    while names:
        name = names.pop(0)
        try:
            module = importlib.import_module(name)
        except Exception:  # a module that cannot load here will say so in its own job
            traceback.print_exc()
            continue
        names.extend(getattr(module, "WARM_START_IMPORTS", ()))
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        top_level = name.partition(".")[0]
        if top_level in sys.stdlib_module_names or not isinstance(path, str) or not os.path.isfile(path):
            continue  # the interpreter's own, or a module without a file (built in, a namespace)
        files = _library_files if top_level == "prunequant" else _third_party_files
        files[path] = _file_state(path)
    _thread_pools = threadpoolctl.ThreadpoolController()
    _thread_pool_libraries.extend(_thread_pools.info())


# --- one job ---------------------------------------------------------------------------------


def _supervise(connection: socket.socket) -> None:
    """In a fork of the server: start the worker, report its pid and then its exit status."""
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        _, fds, _, _ = socket.recv_fds(connection, 1, 3)  # one byte: nothing of the next message
        request = receive_message(connection)
        if request is None or len(fds) != 3:
            os._exit(1)
        refusal = _refusal(connection) or process_state.adopt(request["attributes"])
        if refusal is not None:
            _log(f"job {request['argv'][0]} runs in its own process: {refusal}")
            send_message(connection, {"cold": refusal})
            os._exit(0)
        worker = os.fork()
        if worker == 0:
            connection.close()
            _run_worker(request, fds)  # never returns
        for fd in fds:
            os.close(fd)
        try:
            send_message(connection, {"worker": worker})
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
        send_message(connection, {"status": status})
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(0)


def _refusal(connection: socket.socket) -> str | None:
    """Why the job on ``connection`` must not get a worker of this server, or None.

    Its key already names this server's cgroup and namespaces; checking the process itself
    keeps a job that reached this socket some other way (a shared /tmp) from escaping its own.
    """
    pid, uid, _ = _PEER_CREDENTIALS.unpack(
        connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEER_CREDENTIALS.size)
    )
    if uid != os.getuid():
        return "another user's job"
    try:
        same_place = pid > 0 and process_state.placement(pid) == process_state.placement()
    except OSError:
        same_place = False
    return None if same_place else "the job runs in another cgroup or namespace than this server"


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
        os.environ[WORKER_MARK] = "1"
        tempfile.tempdir = None  # gettempdir() caches its answer; the job's TMPDIR decides anew
        sys.argv = request["argv"]
        sys.path[:] = request["path"]
        if not _files_unchanged(_library_files):
            # Edited since the server imported it: the script imports the library afresh, from
            # disk, as a new process would.
            for name in _library_modules():
                del sys.modules[name]
        _size_thread_pools(request["attributes"].affinity)
        _seed_random_state_afresh()
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


def _size_thread_pools(cpus: tuple[int, ...]) -> None:
    """Size every thread pool the server loaded as a new process on ``cpus`` with this environment would."""
    sizes = {
        library["filepath"]: process_state.thread_pool_size(library["internal_api"], os.environ, cpus)
        for library in _thread_pool_libraries
        if library["internal_api"] in process_state.THREAD_POOL_VARIABLES
    }
    _thread_pools.limit(limits=sizes)  # pools of libraries the job loads itself start sized right
    torch = sys.modules.get("torch")
    if torch is not None:
        # Last: torch's OpenMP runtime is one of the pools above, and torch sizes it as MKL.
        torch.set_num_threads(process_state.thread_pool_size("torch", os.environ, cpus))


def _seed_random_state_afresh() -> None:
    """Give the worker the global random state of a new process, not a copy of the server's."""
    # Each from the operating system's entropy, as each is seeded when a new process imports it.
    random.seed()
    if "numpy.random" in sys.modules:
        sys.modules["numpy.random"].seed()  # the legacy global generator
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.seed()


def _skip_servers_exit_finalizers() -> None:
    """Keep the finalizers the server's imports made from running again at the worker's exit.

    torch gives each operator library it defines a finalizer that deregisters its operators at
    exit: hundreds after the preload, run again at every worker's exit for a process that ends
    anyway. Finalizers the job itself makes (a temporary folder's, say) still run at exit.
    """
    for finalizer in list(getattr(weakref.finalize, "_registry", {})):
        finalizer.atexit = False


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
