"""Typed, frozen results of the Python API, parsed from the orchestrator's JSON replies.

Every model ignores fields it does not know (``extra="ignore"``), so a client keeps working against a
newer orchestrator that reports more. A reply that does not fit (a missing or mistyped field) is an
E010 error at the client's edge, never a half-filled object.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from deploy_code.events import ReplicaState

__all__ = [
    "ApiInfo",
    "Event",
    "Failure",
    "HealthReport",
    "LogLine",
    "NotReady",
    "Outcome",
    "PortUsage",
    "ReplicaStatus",
    "ResourceUsage",
    "RestartResult",
    "ScaleResult",
    "ServiceHealth",
    "ServiceStatus",
    "Status",
    "StopResult",
]

_SETTLED = (ReplicaState.READY, ReplicaState.COMPLETED)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class ReplicaStatus(_Model):
    """One replica of a service, as ``deploy-code status`` shows it."""

    id: str  # ``service.index``
    index: int
    state: ReplicaState
    reason: str = ""
    pid: int | None = None
    ports: dict[str, int] = Field(default_factory=dict)
    restarts: int = 0
    last_exit: int | None = None
    uptime_s: float | None = None
    adopted: bool = False
    log: str | None = None  # the replica's log file on the orchestrator's machine


class ServiceStatus(_Model):
    """One service: ``state`` is the worst of its replicas' states (all ``ready`` when healthy)."""

    name: str
    state: ReplicaState
    ready: int
    desired: int
    restarts: int = 0
    depends_on: dict[str, str] = Field(default_factory=dict)
    failure: str | None = None
    ready_after_s: float | None = None
    replicas: tuple[ReplicaStatus, ...] = ()

    @property
    def healthy(self) -> bool:
        """Every one of the ``desired`` replicas is ready (or, for a one-shot job, completed)."""
        return len(self.replicas) == self.desired and all(r.state in _SETTLED for r in self.replicas)

    @property
    def failed(self) -> bool:
        """A replica gave up (crash loop, start failure, dependency failure); it will not recover alone."""
        return any(r.state == ReplicaState.FAILED for r in self.replicas)


class ResourceUsage(_Model):
    """Capacity and what is booked, per resource (``cpu_cores``, ``memory_mb``, ...)."""

    capacity: dict[str, float]
    allocated: dict[str, float]
    source: str
    pools: dict[str, Any] = Field(default_factory=dict)


class PortUsage(_Model):
    """Ports handed out from the file's ``settings.port_range``."""

    in_use: int
    range: str


class ApiInfo(_Model):
    """Where the API listens, and the *names* and roles of the accepted tokens (never tokens)."""

    unix: str | None = None
    tcp: str | None = None
    tls: bool = False
    tokens: tuple[dict[str, str], ...] = ()


class Status(_Model):
    """The running deployment. ``services`` keeps the file's order.

    ``resources``, ``ports``, ``admission`` and ``api`` are filled only by ``status(detailed=True)``.
    """

    name: str
    file: str
    pid: int
    phase: str  # starting | running | stopping | stopped
    started_at: float  # wall time
    uptime_s: float
    services: dict[str, ServiceStatus]
    replicas_by_state: dict[str, int] = Field(default_factory=dict)
    resources: ResourceUsage | None = None
    ports: PortUsage | None = None
    admission: dict[str, Any] | None = None
    api: ApiInfo | None = None

    @property
    def healthy(self) -> bool:
        """Every service is healthy (see :attr:`ServiceStatus.healthy`)."""
        return all(svc.healthy for svc in self.services.values())


class NotReady(_Model):
    """A replica that is not ready (nor completed), and why."""

    id: str
    state: ReplicaState
    reason: str | None = None


class ServiceHealth(_Model):
    """One service's health: every desired replica ready, or the service ran to completion."""

    healthy: bool
    state: ReplicaState
    ready: int
    desired: int
    restarts: int = 0
    not_ready: tuple[NotReady, ...] = ()  # the orchestrator sends the first 20


class HealthReport(_Model):
    """The orchestrator answers (``ok``) in ``phase`` (starting, running, stopping, stopped).

    ``healthy`` (every service healthy and the phase ``running``) and ``services`` come from
    ``GET /v1/health/report``; they are None and empty from an orchestrator that has no such route.
    """

    ok: bool
    phase: str
    healthy: bool | None = None
    services: dict[str, ServiceHealth] = Field(default_factory=dict)


class Failure(_Model):
    """A service that did not get ready, and why."""

    service: str
    reason: str


class Outcome(_Model):
    """How the deployment went: ``outcome`` is ``ready`` or ``failed``."""

    outcome: str
    duration_s: float
    failures: tuple[Failure, ...] = ()

    @property
    def ready(self) -> bool:
        """Every service got ready."""
        return self.outcome == "ready"


class RestartResult(_Model):
    """Replica ids restarted."""

    restarted: tuple[str, ...]


class StopResult(_Model):
    """Replica ids stopped (they stay stopped until ``restart``)."""

    stopped: tuple[str, ...]


class ScaleResult(_Model):
    """The new replica count and the replica ids added or removed."""

    service: str
    replicas: int
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


class LogLine(_Model):
    """One line of a service's output: the replica that wrote it, and the text."""

    replica: str
    text: str

    @classmethod
    def parse(cls, line: str) -> LogLine:
        """Split the API's ``replica | text`` form (a line without the prefix has ``replica=""``)."""
        replica, sep, text = line.partition(" | ")
        return cls(replica=replica, text=text) if sep else cls(replica="", text=line)


class Event(_Model):
    """One stored event: its row ``id`` (increasing), ``kind`` (e.g. ``replica.transition``), wall time
    ``at``, and the kind's other fields in ``data`` (``old``, ``new``, ``reason``, ``outcome``, ...)."""

    id: int
    kind: str
    at: float
    service: str | None = None
    replica: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if not isinstance(value, dict) or "data" in value:
            return value
        known = ("id", "kind", "at", "service", "replica")
        out: dict[str, Any] = {k: value[k] for k in known if k in value}
        out["data"] = {k: v for k, v in value.items() if k not in known}
        return out
