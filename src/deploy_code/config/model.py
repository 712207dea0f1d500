"""The file format as frozen pydantic models: ``ProjectSpec`` and everything under it.

Unknown keys are errors (``extra="forbid"``); nothing is silently corrected. Durations are seconds
(floats) after parsing ``100ms`` / ``5s`` / ``2m`` / plain numbers. ``${...}`` templates are kept as
strings here and rendered later, when ports are known (see ``interpolate``).
"""

from __future__ import annotations

import re
import signal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from deploy_code.config.api_spec import ApiSpec
from deploy_code.units import Resources, parse_duration, parse_port_range, parse_size_bytes

__all__ = [
    "BackoffSpec",
    "CapacitySpec",
    "Condition",
    "ExecCheck",
    "HealthSpec",
    "HttpCheck",
    "LogLineCheck",
    "NotifyCheck",
    "PlacementSpec",
    "PoolSpec",
    "ProbeSpec",
    "ProjectSpec",
    "ResourcesSpec",
    "RestartSpec",
    "ServiceSpec",
    "Settings",
    "TcpCheck",
    "TimeoutsSpec",
]

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
PORT_NAME_RE = r"^[A-Za-z][A-Za-z0-9_]{0,31}$"
# Resource figures: far above any machine, low enough that the ledger's integer units and every float
# conversion stay finite (cpu_cores: 1e308 or gpu_count: 10**400 crashed `validate` in placement).
MAX_CPU_CORES = 1_000_000.0
MAX_MEMORY_MB = float(2**40)  # 1 EiB
MAX_STORAGE_GB = float(2**30)  # 1 EiB
MAX_GPU_COUNT = 1_000_000


def _duration(value: object) -> float:
    return parse_duration(value)


def _duration_or_auto(value: object) -> float | str:
    if value == "auto":
        return "auto"
    return parse_duration(value)


def _scalar_to_str(value: object) -> object:
    # YAML turns `PORT: 8080` into an int; env values are strings, so accept scalars and say so.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


# The JSON Schema says what the file may contain (``5s``), not the parsed form (a float).
_DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h)?\s*$"
_DURATION_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": _DURATION_PATTERN}],
    "description": "seconds, or a string such as 100ms, 5s, 2m, 1h",
}
_DURATION_OR_AUTO_SCHEMA: dict[str, Any] = {
    "anyOf": [*_DURATION_SCHEMA["anyOf"], {"const": "auto"}],
    "description": "auto, seconds, or a string such as 100ms, 5s, 2m, 1h",
}
_SIZE_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "integer", "minimum": 0}, {"type": "string"}],
    "description": "bytes, or a string such as 64MiB, 1GB, 512k",
}

Duration = Annotated[float, BeforeValidator(_duration), WithJsonSchema(_DURATION_SCHEMA)]
DurationOrAuto = Annotated[
    float | Literal["auto"], BeforeValidator(_duration_or_auto), WithJsonSchema(_DURATION_OR_AUTO_SCHEMA)
]
EnvValue = Annotated[
    str, BeforeValidator(_scalar_to_str), WithJsonSchema({"type": ["string", "number", "boolean"]})
]
Condition = Literal["started", "healthy", "completed_successfully"]
PortValue = Annotated[int, Field(ge=1, le=65535)] | Literal["auto"]
PortRef = Annotated[str, Field(pattern=PORT_NAME_RE)] | Annotated[int, Field(ge=1, le=65535)]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TcpCheck(_Strict):
    """Ready when a TCP connect to ``host:port`` succeeds. ``port`` is a port name or a number."""

    port: PortRef
    host: str = "127.0.0.1"


class HttpCheck(_Strict):
    """Ready when ``GET scheme://host:port/path`` answers 2xx or 3xx."""

    port: PortRef
    path: str = "/"
    host: str = "127.0.0.1"
    scheme: Literal["http", "https"] = "http"


class ExecCheck(_Strict):
    """Ready when the command exits 0 (argv list, run without a shell)."""

    command: list[str] = Field(min_length=1)


class LogLineCheck(_Strict):
    """Ready once a line of the replica's output matches ``pattern`` (a Python regex)."""

    pattern: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, v: str) -> str:
        try:
            re.compile(v)
        except (re.error, RecursionError, OverflowError) as exc:  # 10,000 nested groups: RecursionError
            raise ValueError(f"invalid regular expression: {exc}") from None
        return v


class NotifyCheck(_Strict):
    """Ready when the service sends ``READY=1`` to ``$NOTIFY_SOCKET`` (the systemd protocol)."""


class ProbeSpec(_Strict):
    """One probe: exactly one check kind plus its cadence and thresholds."""

    tcp: TcpCheck | None = None
    http: HttpCheck | None = None
    exec: ExecCheck | None = None
    log_line: LogLineCheck | None = None
    notify: NotifyCheck | None = None
    period: Duration = 5.0
    timeout: Duration = 1.0
    initial_delay: Duration = 0.0
    failure_threshold: int = Field(default=3, ge=1, le=10_000)
    success_threshold: int = Field(default=1, ge=1, le=10_000)

    @model_validator(mode="before")
    @classmethod
    def _notify_shorthand(cls, data: Any) -> Any:
        # `notify: true` is the natural way to write a check without options.
        if isinstance(data, dict) and data.get("notify") is True:
            data = {**data, "notify": {}}
        return data

    @model_validator(mode="after")
    def _exactly_one(self) -> ProbeSpec:
        kinds = [k for k in ("tcp", "http", "exec", "log_line", "notify") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError(
                "a probe needs exactly one of tcp, http, exec, log_line, notify"
                + (f" (got {', '.join(kinds)})" if kinds else "")
            )
        if self.period <= 0:
            raise ValueError("period must be greater than 0")
        return self

    @property
    def kind(self) -> str:
        """The check kind: tcp, http, exec, log_line or notify."""
        for k in ("tcp", "http", "exec", "log_line", "notify"):
            if getattr(self, k) is not None:
                return k
        raise AssertionError("validated probe without a kind")

    @property
    def port_ref(self) -> str | int | None:
        """The port a tcp/http check names, else None."""
        check = self.tcp or self.http
        return None if check is None else check.port


class HealthSpec(_Strict):
    """Probes: ``startup`` gates the others; failing ``liveness`` restarts the replica."""

    startup: ProbeSpec | None = None
    readiness: ProbeSpec | None = None
    liveness: ProbeSpec | None = None
    # Without a readiness probe, a replica counts as ready once its process has run this long
    # (supervisord's startsecs, PM2's min_uptime): a process that dies at once never looks ready.
    min_uptime: Duration = 1.0


class BackoffSpec(_Strict):
    """Exponential restart backoff: ``initial * factor**n`` capped at ``max``, ± ``jitter`` fraction."""

    initial: Duration = 0.1
    max: Duration = 30.0
    factor: float = Field(default=2.0, ge=1.0, le=100.0)
    jitter: float = Field(default=0.2, ge=0.0, le=1.0)


class RestartSpec(_Strict):
    """When to restart a replica that exited, and when to give up (crash loop)."""

    policy: Literal["always", "on-failure", "no"] = "on-failure"
    backoff: BackoffSpec = BackoffSpec()
    reset_after: Duration = 60.0
    max_restarts: int = Field(default=10, ge=0, le=1_000_000)
    window: Duration = 60.0

    @field_validator("policy", mode="before")
    @classmethod
    def _yaml_no(cls, v: object) -> object:
        # YAML 1.1 reads a bare `no` as false; `policy: no` is what people write.
        return "no" if v is False else v


class TimeoutsSpec(_Strict):
    """Per-operation timeouts. ``ready: auto`` learns from history, bounded (see supervisor)."""

    start: Duration = 10.0
    ready: DurationOrAuto = "auto"
    stop: Duration = 10.0
    # How long a replica may wait for free resources (its pool or the machine is full) before E004.
    schedule: Duration = 60.0


class ResourcesSpec(_Strict):
    """What one replica books: fractional cores, MiB of memory, GiB of storage, whole GPUs."""

    cpu_cores: float = Field(default=0.0, ge=0.0, le=MAX_CPU_CORES)
    memory_mb: float = Field(default=0.0, ge=0.0, le=MAX_MEMORY_MB)
    storage_gb: float = Field(default=0.0, ge=0.0, le=MAX_STORAGE_GB)
    gpu_count: int = Field(default=0, ge=0, le=MAX_GPU_COUNT)

    def to_resources(self) -> Resources:
        """The unit-layer value."""
        return Resources(self.cpu_cores, self.memory_mb, self.storage_gb, self.gpu_count)


class CapacitySpec(_Strict):
    """Figures that replace what the machine reports (each optional: unset ones are discovered)."""

    cpu_cores: float | None = Field(default=None, ge=0.0, le=MAX_CPU_CORES)
    memory_mb: float | None = Field(default=None, ge=0.0, le=MAX_MEMORY_MB)
    storage_gb: float | None = Field(default=None, ge=0.0, le=MAX_STORAGE_GB)
    gpu_count: int | None = Field(default=None, ge=0, le=MAX_GPU_COUNT)

    def overrides(self) -> dict[str, float]:
        """The figures given, by resource name."""
        return {k: float(v) for k, v in self.model_dump().items() if v is not None}


class PoolSpec(_Strict):
    """A named share of the node (or of a parent pool): its services together book at most this.

    A figure left out is not limited by this pool (only by its parent).
    """

    cpu_cores: float | None = Field(default=None, ge=0.0, le=MAX_CPU_CORES)
    memory_mb: float | None = Field(default=None, ge=0.0, le=MAX_MEMORY_MB)
    storage_gb: float | None = Field(default=None, ge=0.0, le=MAX_STORAGE_GB)
    gpu_count: int | None = Field(default=None, ge=0, le=MAX_GPU_COUNT)
    parent: str | None = None  # another pool; None: the node itself

    def quotas(self) -> dict[str, float]:
        """The figures this pool limits, by resource name."""
        return {k: float(v) for k, v in self.model_dump(exclude={"parent"}).items() if v is not None}


class PlacementSpec(_Strict):
    """Where a service's replicas may go (filters) and where they would rather go (scores)."""

    node_labels: dict[str, str] = Field(default_factory=dict)  # required labels of the node
    affinity: list[str] = Field(default_factory=list)  # hard: on a node that runs these services
    anti_affinity: list[str] = Field(default_factory=list)  # hard: never beside these services
    preferred_affinity: list[str] = Field(default_factory=list)  # soft
    preferred_anti_affinity: list[str] = Field(default_factory=list)  # soft
    spread: bool = False  # spread this service's replicas across nodes


def _bandwidth(value: object) -> int:
    """``10MB/s``, ``512KiB/s``, ``1000000`` (bytes per second)."""
    if isinstance(value, str) and value.strip().endswith("/s"):
        value = value.strip()[:-2]
    rate = parse_size_bytes(value)
    if rate <= 0:
        raise ValueError("bandwidth must be positive")
    return rate


_BANDWIDTH_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "integer", "minimum": 1}, {"type": "string"}],
    "description": "bytes per second, or a string such as 10MB/s, 512KiB/s",
}
Bandwidth = Annotated[int, BeforeValidator(_bandwidth), WithJsonSchema(_BANDWIDTH_SCHEMA)]


class ExposeSpec(_Strict):
    """A stable front port for one of the service's named ports, balancing over its ready replicas."""

    port: PortValue = "auto"  # the front port: fixed, or auto from settings.port_range
    host: str | None = None  # default: settings.host
    balance: Literal["round_robin", "least_conn"] = "round_robin"
    bandwidth: Bandwidth | None = None  # per exposed port, each direction
    connect_timeout: Duration = 0.5  # to find a ready replica and connect to it (retries included)
    max_connections: int | None = Field(default=None, ge=1, le=1_000_000)
    queue_timeout: Duration = 1.0  # how long a connection over max_connections waits for a slot


class AutoscaleSpec(_Strict):
    """Scale replicas between ``min`` and ``max`` to keep ``metric`` near ``target``."""

    min: int = Field(default=1, ge=0, le=10_000)
    max: int = Field(ge=1, le=10_000)
    metric: Literal["cpu", "connections", "latency_p95"] = "cpu"
    target: float = Field(gt=0)  # cpu: percent per replica; connections: per replica; latency: ms
    interval: Duration = Field(default=5.0, gt=0)
    scale_up_cooldown: Duration = 10.0
    scale_down_cooldown: Duration = 60.0

    @model_validator(mode="after")
    def _bounds(self) -> AutoscaleSpec:
        if self.min > self.max:
            raise ValueError(f"autoscale.min ({self.min}) is above autoscale.max ({self.max})")
        return self


class DeploySpec(_Strict):
    """How ``apply`` replaces a changed service's replicas."""

    # rolling: new replicas start beside the old ones (max_surge at a time) and replace them one by
    # one once ready; blue-green: a whole new set starts, traffic moves when all are ready, the old set
    # drains; recreate: stop all, then start all (downtime; the only choice for fixed ports).
    strategy: Literal["rolling", "blue-green", "recreate"] = "rolling"
    max_surge: int = Field(default=1, ge=0, le=10_000)
    max_unavailable: int = Field(default=0, ge=0, le=10_000)
    # How long new replicas may take to get ready before the rollout is rolled back.
    timeout: Duration = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _progress(self) -> DeploySpec:
        if self.strategy == "rolling" and self.max_surge == 0 and self.max_unavailable == 0:
            raise ValueError("a rolling deploy needs max_surge or max_unavailable above 0")
        return self


class ServiceSpec(_Strict):
    """One service: what to run, how many, with what, after whom, and how to know it is healthy."""

    command: list[str] | str
    shell: bool = False
    working_dir: str | None = None
    env: dict[str, EnvValue] = Field(default_factory=dict)
    env_file: str | list[str] | None = None
    ports: dict[Annotated[str, Field(pattern=PORT_NAME_RE)], PortValue] = Field(default_factory=dict)
    resources: ResourcesSpec = ResourcesSpec()
    health: HealthSpec = HealthSpec()
    depends_on: dict[str, Condition] = Field(default_factory=dict)
    replicas: int = Field(default=1, ge=0, le=10_000)
    restart: RestartSpec = RestartSpec()
    timeouts: TimeoutsSpec = TimeoutsSpec()
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)  # an aging queue key: a float
    stop_signal: str = "SIGTERM"
    pool: str | None = None
    placement: PlacementSpec = PlacementSpec()
    expose: dict[Annotated[str, Field(pattern=PORT_NAME_RE)], ExposeSpec] = Field(default_factory=dict)
    autoscale: AutoscaleSpec | None = None
    deploy: DeploySpec = DeploySpec()

    @model_validator(mode="before")
    @classmethod
    def _depends_on_list(cls, data: Any) -> Any:
        # `depends_on: [db]` is shorthand for `{db: started}`, as in docker compose.
        if isinstance(data, dict) and isinstance(data.get("depends_on"), list):
            deps = data["depends_on"]
            if all(isinstance(d, str) for d in deps):
                data = {**data, "depends_on": dict.fromkeys(deps, "started")}
        return data

    @field_validator("command")
    @classmethod
    def _non_empty(cls, v: list[str] | str) -> list[str] | str:
        if (isinstance(v, str) and not v.strip()) or (isinstance(v, list) and not v):
            raise ValueError("command must not be empty")
        return v

    @field_validator("stop_signal")
    @classmethod
    def _known_signal(cls, v: str) -> str:
        name = v.upper() if v.upper().startswith("SIG") else f"SIG{v.upper()}"
        if not isinstance(getattr(signal, name, None), signal.Signals):
            raise ValueError(f"unknown signal {v!r} (use e.g. SIGTERM, SIGINT, SIGQUIT)")
        return name

    @model_validator(mode="after")
    def _shell_needs_string(self) -> ServiceSpec:
        if isinstance(self.command, str) and not self.shell:
            raise ValueError("command is a string but shell is false: give an argv list, or set shell: true")
        return self

    @property
    def argv_template(self) -> list[str]:
        """The command as argv templates (a string command runs under ``/bin/sh -c``)."""
        if isinstance(self.command, str):
            return ["/bin/sh", "-c", self.command]
        return list(self.command)

    @property
    def signal_number(self) -> int:
        """``stop_signal`` as a number."""
        return int(getattr(signal, self.stop_signal))


class Settings(_Strict):
    """Project-wide settings."""

    port_range: str = "30000-32000"
    max_parallel: int | Literal["auto"] = "auto"
    host: str = "127.0.0.1"
    state_dir: str = ".deploy-code"
    log_max_size: Annotated[int, BeforeValidator(parse_size_bytes), WithJsonSchema(_SIZE_SCHEMA)] = 10 * 2**20
    log_backups: int = Field(default=3, ge=0, le=100)
    port_quarantine: Duration = 2.0
    # Every booking is a lease of this length, renewed by the orchestrator while its replica's task
    # lives; a lease nobody renews (a task that died without releasing) is reaped, with an event.
    lease_ttl: Duration = Field(default=30.0, gt=0)
    capacity: CapacitySpec = CapacitySpec()
    # Kept back for the system and the orchestrator itself: never booked by services.
    headroom: ResourcesSpec = ResourcesSpec(memory_mb=256)
    labels: dict[str, str] = Field(default_factory=dict)  # this node's labels, for placement

    @field_validator("port_range")
    @classmethod
    def _range(cls, v: str) -> str:
        parse_port_range(v)
        return v

    @field_validator("max_parallel")
    @classmethod
    def _parallel(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("max_parallel must be at least 1 or auto")
        return v

    @property
    def port_bounds(self) -> tuple[int, int]:
        """``port_range`` as an inclusive ``(low, high)``."""
        return parse_port_range(self.port_range)


# Imported here, not at the top: observe.py builds on _Strict and Duration defined above.
from deploy_code.config.observe import AlertsSpec, RetentionSpec  # noqa: E402


class ProjectSpec(_Strict):
    """The whole file."""

    version: Literal[1] = 1
    name: str = Field(default="default", pattern=NAME_RE)
    settings: Settings = Settings()
    pools: dict[Annotated[str, Field(pattern=NAME_RE)], PoolSpec] = Field(default_factory=dict)
    services: dict[Annotated[str, Field(pattern=NAME_RE)], ServiceSpec]
    api: ApiSpec = ApiSpec()  # TCP listener, TLS and tokens (the unix socket needs none)
    retention: RetentionSpec = RetentionSpec()  # bounds of the state store's tables
    alerts: AlertsSpec = AlertsSpec()  # alert rules and their default webhook
