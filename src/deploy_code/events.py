"""Event records: what the supervisor publishes and state / metrics / API consume.

``ReplicaState`` lives here so that every layer can name states without importing ``supervisor``.
Records are frozen values; sinks receive them through :class:`EventSink` and must never block.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "AlertFired",
    "AlertResolved",
    "DeploymentFinished",
    "DeploymentStarted",
    "Event",
    "EventSink",
    "LeaseExpired",
    "LogProblem",
    "ProbeFailed",
    "ReplicaExited",
    "ReplicaState",
    "ReplicaTransitioned",
    "ScaleDecision",
]


class ReplicaState(enum.StrEnum):
    """Life cycle of one replica. The legal transitions are the table in ``supervisor.states``."""

    PENDING = "pending"  # placed, waiting for dependencies or admission
    STARTING = "starting"  # process spawned, not yet ready
    READY = "ready"  # readiness passed
    DEGRADED = "degraded"  # running, but readiness is failing
    BACKOFF = "backoff"  # exited; waiting for the restart delay
    STOPPING = "stopping"  # stop signal sent, waiting for exit
    STOPPED = "stopped"  # stopped on purpose
    COMPLETED = "completed"  # exited 0 and is not restarted
    FAILED = "failed"  # gave up: crash loop, start failure, dependency failure

    @property
    def is_terminal(self) -> bool:
        """True for states a replica does not leave on its own."""
        return self in (ReplicaState.STOPPED, ReplicaState.COMPLETED, ReplicaState.FAILED)

    @property
    def is_running(self) -> bool:
        """True while a process is (believed to be) alive."""
        return self in (
            ReplicaState.STARTING,
            ReplicaState.READY,
            ReplicaState.DEGRADED,
            ReplicaState.STOPPING,
        )


@dataclass(frozen=True, slots=True)
class ReplicaTransitioned:
    """A replica changed state."""

    service: str
    replica: int
    old: ReplicaState
    new: ReplicaState
    reason: str
    at: float  # wall time
    pid: int | None = None
    kind: str = field(default="replica.transition", init=False)


@dataclass(frozen=True, slots=True)
class ReplicaExited:
    """A replica's process exited. ``returncode`` is None for an adopted process (not our child)."""

    service: str
    replica: int
    pid: int
    returncode: int | None
    at: float
    kind: str = field(default="replica.exited", init=False)


@dataclass(frozen=True, slots=True)
class ProbeFailed:
    """A probe failed once (the replica changes state only past its threshold)."""

    service: str
    replica: int
    probe: str  # startup | readiness | liveness
    message: str
    at: float
    kind: str = field(default="probe.failed", init=False)


@dataclass(frozen=True, slots=True)
class DeploymentFinished:
    """A deployment (``up``) reached its outcome: ``ready``, ``failed`` or ``cancelled``."""

    name: str
    outcome: str
    duration_s: float
    at: float
    message: str = ""
    kind: str = field(default="deployment.finished", init=False)


@dataclass(frozen=True, slots=True)
class LeaseExpired:
    """The reaper freed a booking whose lease nobody renewed (``owner`` is ``service.index``)."""

    owner: str
    service: str
    resources: dict[str, float]
    expired_at: float  # monotonic expiry of the lease
    at: float  # wall time of the reap
    kind: str = field(default="lease.expired", init=False)


@dataclass(frozen=True, slots=True)
class DeploymentStarted:
    """A deployment (``up``) began; its row in ``history`` stays open until ``DeploymentFinished``."""

    name: str
    at: float  # wall time
    message: str = ""
    kind: str = field(default="deployment.started", init=False)


@dataclass(frozen=True, slots=True)
class AlertFired:
    """An alert rule's condition became true for a service (``condition``: the rule's kind)."""

    rule: str
    service: str
    condition: str  # down_for | restart_rate | memory_above_percent
    message: str
    value: float  # what was measured: seconds down, restarts in the window, memory percent
    threshold: float
    at: float  # wall time
    kind: str = field(default="alert.fired", init=False)


@dataclass(frozen=True, slots=True)
class AlertResolved:
    """A fired alert's condition is no longer true (``duration_s``: how long it was firing)."""

    rule: str
    service: str
    condition: str
    message: str
    duration_s: float
    at: float  # wall time
    kind: str = field(default="alert.resolved", init=False)


@dataclass(frozen=True, slots=True)
class LogProblem:
    """A replica's log file could not be rotated (``ok`` False: e.g. the disk is full; the service keeps
    running and its output keeps growing the file) or can be again (``ok`` True)."""

    service: str
    path: str
    message: str
    ok: bool
    at: float  # wall time
    kind: str = field(default="log.problem", init=False)


@dataclass(frozen=True, slots=True)
class ScaleDecision:
    """The autoscaler changed a service's replica count (``old`` -> ``new``), with its inputs."""

    service: str
    old: int
    new: int
    metric: str  # cpu | connections | latency_p95
    value: float  # the measured figure (per replica for cpu and connections; ms for latency)
    target: float
    reason: str
    at: float  # wall time
    kind: str = field(default="scale.decision", init=False)


Event = (
    ReplicaTransitioned
    | ReplicaExited
    | ProbeFailed
    | DeploymentStarted
    | DeploymentFinished
    | LeaseExpired
    | AlertFired
    | AlertResolved
    | ScaleDecision
    | LogProblem
)


class EventSink(Protocol):
    """A consumer of events. ``publish`` is called on the orchestrator's loop and must not block."""

    def publish(self, event: Event) -> None:
        """Take one event; drop (and count) rather than block when full."""
        ...
