"""Runtime: the backend seam between the supervisor and running workloads.

Inputs: a :class:`ProcessSpec` per replica (already interpolated by the supervisor). Outputs: a
:class:`ProcessHandle` that reports the exit event-driven and can signal and stop the replica's process
group; :class:`Capacity` for the resources layer; per-replica log files (:class:`LogFile`, followed by
:class:`LogFollower`).

Must never: import config, graph, scheduling or supervisor; block the event loop (spawns run in a small
thread pool); kill replicas when the orchestrator exits (they outlive it and are re-adopted with
:meth:`LocalBackend.adopt`); hold anything per exited process once its handle is closed.
"""

from deploy_code.runtime.backend import (
    AppliedLimits,
    Backend,
    Capacity,
    GpuInfo,
    Handle,
    OomReport,
    ProcessIdentity,
    ProcessSpec,
    ResourceLimits,
)
from deploy_code.runtime.local import (
    LocalBackend,
    LogFile,
    LogFollower,
    ProcessHandle,
    discover_capacity,
    marked_groups,
    port_is_free,
    proc_start_time,
)

__all__ = [
    "AppliedLimits",
    "Backend",
    "Capacity",
    "GpuInfo",
    "Handle",
    "LocalBackend",
    "LogFile",
    "LogFollower",
    "OomReport",
    "ProcessHandle",
    "ProcessIdentity",
    "ProcessSpec",
    "ResourceLimits",
    "discover_capacity",
    "marked_groups",
    "port_is_free",
    "proc_start_time",
]
