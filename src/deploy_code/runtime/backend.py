"""The backend seam: the values a runtime backend takes and returns, and the Protocols it implements.

A backend turns a :class:`ProcessSpec` into a running workload and reports when it exits. The supervisor
talks only to :class:`Backend` and :class:`Handle`; the local backend (``runtime.local``) is the default,
and a cluster backend can implement the same Protocols later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from deploy_code.units import Resources

__all__ = [
    "AppliedLimits",
    "Backend",
    "Capacity",
    "GpuInfo",
    "Handle",
    "OomReport",
    "ProcessIdentity",
    "ProcessSpec",
    "ResourceLimits",
]


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    """What a replica may use, as declared (``resources`` in the service). 0 means "no limit declared".

    Attributes:
        memory_mb: MiB of memory; past it the replica is killed (cgroups) or its allocations fail (rlimit).
        cpu_cores: fractional cores; the replica is throttled to this share of CPU time (cgroups only).
    """

    memory_mb: float = 0.0
    cpu_cores: float = 0.0


@dataclass(frozen=True, slots=True)
class AppliedLimits:
    """The limits actually enforced on one process, and how.

    Attributes:
        method: ``"cgroup-v2"``, ``"cgroup-v1"``, ``"rlimit"`` or ``"none"`` (nothing enforced: no limit
            declared, or the machine offers no way).
        memory_mb: the memory limit in force (MiB), 0 when none.
        cpu_cores: the CPU quota in force (cores), 0 when none.
    """

    method: str = "none"
    memory_mb: float = 0.0
    cpu_cores: float = 0.0

    def to_dict(self) -> dict[str, object]:
        """Plain data for status."""
        return {"method": self.method, "memory_mb": self.memory_mb, "cpu_cores": self.cpu_cores}


@dataclass(frozen=True, slots=True)
class OomReport:
    """The kernel's out-of-memory killer acted inside a replica's cgroup.

    Attributes:
        kills: processes it killed there (the replica or its children).
        limit_mb: the memory limit (MiB).
        peak_mb: the highest usage recorded (MiB), None where the kernel does not keep it.
    """

    kills: int
    limit_mb: float
    peak_mb: float | None

    def describe(self) -> str:
        """E.g. ``killed at 256 MiB limit (peak 255.9 MiB)``."""
        peak = "" if self.peak_mb is None else f" (peak {self.peak_mb:.1f} MiB)"
        return f"killed at {self.limit_mb:g} MiB limit{peak}"


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """Everything needed to start one replica's process.

    Attributes:
        name: ``service.replica``, used in messages.
        argv: the command, already interpolated; executed verbatim, never through a shell.
        env: the complete environment of the child (nothing is inherited from the orchestrator).
        cwd: the working directory; must exist.
        log_path: the per-replica log file; the child's stdout and stderr are written to it directly.
        start_timeout: seconds allowed for the spawn itself (not for readiness).
        spawn_retries: retries, with exponential backoff, when the system is short of resources
            (``EAGAIN`` / ``ENOMEM`` from fork or exec).
        limits: memory and CPU to enforce on the process (and its children).
        project: the project's name; groups the replica's cgroup with its project's
            (``deploy-code/<project>/<name>``).
    """

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str
    log_path: str
    start_timeout: float = 10.0
    spawn_retries: int = 3
    limits: ResourceLimits = ResourceLimits()
    project: str = ""


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """Names one process across orchestrator restarts.

    Attributes:
        pid: the process id.
        pgid: its process group (the group that ``signal_group`` and ``stop`` signal).
        start_time: field 22 of ``/proc/<pid>/stat`` (clock ticks since boot). With ``pid`` it identifies
            the process: a reused pid has a different start time.
    """

    pid: int
    pgid: int
    start_time: int


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """One GPU as NVML reports it. ``memory_mb`` is MiB."""

    index: int
    name: str
    memory_mb: int
    uuid: str


@dataclass(frozen=True, slots=True)
class Capacity:
    """What this machine offers.

    Attributes:
        total: cores, memory (MiB), storage (GiB of the filesystem holding the state path), GPU count.
        gpus: each GPU found, in NVML index order; empty when NVML is unavailable.
        source: where the numbers came from, e.g. ``"psutil+nvml"`` or ``"psutil"``.
    """

    total: Resources
    gpus: tuple[GpuInfo, ...]
    source: str


class Handle(Protocol):
    """One started or adopted workload. Owned by the supervisor's replica task, which closes it."""

    identity: ProcessIdentity
    adopted: bool
    limits: AppliedLimits  # what is enforced on it, and how
    oom: OomReport | None  # set at exit when the out-of-memory killer acted on it (or its children)

    @property
    def returncode(self) -> int | None:
        """Exit status once exited (negative: killed by that signal); None while running or if unknown."""
        ...

    @property
    def exited(self) -> bool:
        """True once the exit has been observed."""
        ...

    async def wait(self) -> int | None:
        """Return when the workload has exited: its return code, or None when it cannot be known."""
        ...

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the whole process group; False when it has already exited."""
        ...

    async def stop(self, sig: int, timeout: float) -> int | None:
        """Send ``sig``, wait up to ``timeout`` seconds, then kill; return after exit. Idempotent."""
        ...

    def close(self) -> None:
        """Release what the backend holds for this workload. Idempotent; does not kill it."""
        ...


class Backend(Protocol):
    """Starts, adopts and reports on workloads. Called by the supervisor on the orchestrator's loop.

    ``start`` raises :class:`deploy_code.errors.StartError` (E005) when the workload cannot start;
    every other failure mode is reported through the handle (its exit).
    """

    async def start(self, spec: ProcessSpec) -> Handle:
        """Start a workload for ``spec`` and return its handle once it runs."""
        ...

    def adopt(self, identity: ProcessIdentity) -> Handle | None:
        """Take over a workload started by an earlier orchestrator run; None when it is gone."""
        ...

    def capacity(self, storage_path: str) -> Capacity:
        """Discover what this backend's machine (or cluster) offers."""
        ...

    @property
    def limits_method(self) -> str:
        """How declared limits are enforced: ``cgroup-v2``, ``cgroup-v1``, ``rlimit`` or ``none``."""
        ...

    async def aclose(self) -> None:
        """Release the backend's resources. Running workloads are left running."""
        ...
