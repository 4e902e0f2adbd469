"""What makes a process a given job's: where it runs, and the attributes it inherited.

A warm worker (:mod:`prunequant.workflow.warm_server`) is forked from a server that an earlier job
started, so whatever a process inherits at fork is the server's until it is set again. Two kinds:

- *placement*: the cgroup and the namespaces. A worker cannot leave its server's, so a job is
  only ever served by a server that shares them (they are part of the server's key, and each
  connection is checked).
- *attributes*: CPU affinity, umask, resource limits and niceness. The job's process sends its
  own, and the worker takes them on before the job's script runs. Two of them a process without
  privileges can only lower: the hard resource limits and the priority (niceness can only rise).
  Those are part of the server's key too, so a job finds a server that can take on its
  attributes; when one still cannot be taken on, the job runs in its own process.

Only the standard library: every job's own process imports this module.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

__all__ = ["JobAttributes", "adopt", "placement", "thread_pool_size", "unraisable_attributes"]

# Every resource limit this platform has, by name (RLIMIT_AS, RLIMIT_NOFILE, ...).
RESOURCE_LIMITS = tuple(sorted(name for name in dir(resource) if name.startswith("RLIMIT_")))
# The namespaces a Linux process lives in; a container or an `unshare` gives it other ones.
NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")
# Where each kind of thread pool reads its size when it starts, first variable first (the keys
# are threadpoolctl's names, and torch's own pool, which follows MKL's).
THREAD_POOL_VARIABLES = {
    "openmp": ("OMP_NUM_THREADS",),
    "openblas": ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS"),
    "mkl": ("MKL_NUM_THREADS", "OMP_NUM_THREADS"),
    "torch": ("MKL_NUM_THREADS", "OMP_NUM_THREADS"),
}


def placement(pid: int | str = "self") -> str:
    """The cgroup and namespaces of process ``pid`` as one text: equal text, same place.

    Raises OSError where ``/proc`` cannot tell (not Linux, or another user's process).
    """
    proc = Path("/proc") / str(pid)
    namespaces = [os.readlink(proc / "ns" / name) for name in NAMESPACES]
    return "\n".join([(proc / "cgroup").read_text(), *namespaces])


def thread_pool_size(pool: str, environ: dict[str, str], cpus: tuple[int, ...]) -> int:
    """The size a thread pool of kind ``pool`` takes in a new process with ``environ`` on ``cpus``.

    As these libraries size their pools (measured on torch 2.13's MKL and OpenMP and numpy's
    OpenBLAS): OpenMP takes the count asked for, else one thread per CPU; OpenBLAS the same, but
    never more than the CPUs; MKL, and torch with it, the count asked for up to the machine's
    physical cores (MKL_DYNAMIC), else the physical cores among the CPUs.
    """
    requested = _requested_threads(environ, THREAD_POOL_VARIABLES[pool])
    if pool == "openmp":
        return requested or len(cpus)
    if pool == "openblas":
        return min(requested or len(cpus), len(cpus))
    if requested:
        return min(requested, _physical_cores(tuple(range(os.cpu_count() or 1))))
    return _physical_cores(cpus)


def _requested_threads(environ: dict[str, str], variables: tuple[str, ...]) -> int | None:
    for name in variables:
        first = environ.get(name, "").split(",")[0].strip()  # OpenMP reads "4,2" as 4 at the top level
        if first.isdigit() and int(first) > 0:
            return int(first)
    return None


def _physical_cores(cpus: tuple[int, ...]) -> int:
    """How many cores ``cpus`` belong to: two hardware threads of one core count once."""
    cores = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            cores.add(((topology / "physical_package_id").read_text(), (topology / "core_id").read_text()))
        except OSError:
            return len(cpus)  # no topology to read: every CPU its own core
    return len(cores)


def _resource_limits() -> dict[str, tuple[int, int]]:
    return {name: resource.getrlimit(getattr(resource, name)) for name in RESOURCE_LIMITS}


def _niceness() -> int:
    return os.getpriority(os.PRIO_PROCESS, 0)


def unraisable_attributes() -> str:
    """The attributes a worker without privileges could not take on from a server with lower ones.

    The hard limits can only be lowered and the niceness only raised: a server started by a job
    with lower ones could not serve this job, so they key the server.
    """
    hard = {name: hard for name, (_, hard) in _resource_limits().items()}
    return f"niceness {_niceness()} hard limits {sorted(hard.items())}"


@dataclass(frozen=True)
class JobAttributes:
    """The inherited attributes of a job's process that a worker takes on."""

    affinity: tuple[int, ...]  # CPUs the process may run on
    umask: int
    limits: dict[str, tuple[int, int]]  # resource limit name → (soft, hard)
    niceness: int

    @classmethod
    def of_this_process(cls) -> JobAttributes:
        umask = os.umask(0)  # reading the umask sets it: put it back at once (no thread runs yet)
        os.umask(umask)
        return cls(
            affinity=tuple(sorted(os.sched_getaffinity(0))),
            umask=umask,
            limits=_resource_limits(),
            niceness=_niceness(),
        )


def adopt(job: JobAttributes) -> str | None:
    """Give this process, and what it forks next, ``job``'s attributes; None, or why it could not.

    Without privileges a limit above its hard limit, a niceness below the current one and CPUs
    outside the cgroup's set are refused: the job then runs in its own process.
    """
    try:
        for name, limits in job.limits.items():
            resource.setrlimit(getattr(resource, name), limits)
        os.setpriority(os.PRIO_PROCESS, 0, job.niceness)
        os.sched_setaffinity(0, job.affinity)
    except (OSError, ValueError) as error:
        return f"cannot take on the job's process attributes: {error}"
    os.umask(job.umask)
    return None
