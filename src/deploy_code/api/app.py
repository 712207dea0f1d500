"""FastAPI routes over the orchestrator: one per CLI command, each with the least role it needs.

=====================================  ========  ==================================================
route                                  role      what
=====================================  ========  ==================================================
GET  /v1/health                        viewer    liveness of the orchestrator and its phase
GET  /v1/health/report                 viewer    per service: healthy, state, ready / desired, restarts
GET  /v1/top                           viewer    per replica: CPU, memory, open files, restarts, uptime
GET  /v1/history                       viewer    points of history keys (1 s or 1 min) for plots
GET  /v1/status                        viewer    what ``status`` shows (+ ``api``: listeners, token names)
GET  /v1/outcome                       viewer    the deployment outcome (waits until known)
GET  /v1/services[/{name}]             viewer    per-service state and replicas
GET  /v1/logs/{service}                viewer    output lines; ``follow=true`` streams text
GET  /v1/events                        viewer    stored events; ``follow=true`` streams NDJSON
GET  /v1/deployments                   viewer    one row per ``up``, newest first
GET  /metrics                          viewer    Prometheus text exposition
GET  /openapi.json                     viewer    this API's OpenAPI document
GET  /dashboard[/static/{file}]        none      the web dashboard's page and files (no data: see .dashboard)
POST /v1/restart, /v1/stop, /v1/scale  operator  change services
POST /v1/down                          admin     stop everything and end the orchestrator
=====================================  ========  ==================================================

On the unix socket every caller is admin (see :mod:`.auth`). Errors are problem+json (:mod:`.problems`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Callable
from enum import IntEnum
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, Field

from deploy_code import __version__
from deploy_code.api.auth import require
from deploy_code.api.dashboard import add_dashboard
from deploy_code.api.events import NDJSON, follow_events
from deploy_code.api.limits import BodyLimit
from deploy_code.api.problems import PROBLEM, Problem, install_problem_handlers
from deploy_code.api.tokens import TokenSet
from deploy_code.errors import DeployCodeError, ErrorCode
from deploy_code.metrics import CONTENT_TYPE
from deploy_code.supervisor import Orchestrator

__all__ = ["create_app"]

MAX_LOG_LINES = 10_000  # per replica and request; more is refused (422)
MAX_EVENTS = 10_000  # rows one request may return (the store's own cap); page with after_id
MAX_DEPLOYMENTS = 1_000  # rows one request may return
MAX_REPLICAS = 10_000  # same bound as the file's `replicas`
MAX_HISTORY_KEYS = 64  # keys one /v1/history request may ask for (a dashboard page needs ~3 a replica)
MAX_HISTORY_SINCE_S = 86_400  # the coarse ring's reach: 24 h of 1 min points

viewer = Depends(require("viewer"))
operator = Depends(require("operator"))
admin = Depends(require("admin"))


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem+json replies a route can give (auth and validation always).

    400 is a body that is not JSON at all; 422 a body or query that does not match its schema.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({401, 403, 422, *statuses}):
        out[status] = {"model": Problem, "content": {PROBLEM: {}}, "description": "a problem (see code)"}
    return out


class ServicesBody(BaseModel):
    """A list of service names, with an optional stop timeout."""

    services: list[str] = Field(min_length=1, max_length=10_000)
    timeout: float | None = Field(default=None, ge=0, le=3600)


class ScaleBody(BaseModel):
    """Run ``replicas`` replicas of ``service``."""

    service: str = Field(min_length=1, max_length=200)
    replicas: int = Field(ge=0, le=MAX_REPLICAS)
    timeout: float | None = Field(default=None, ge=0, le=3600)


class ApplyBody(BaseModel):
    """``apply`` options: ``dry_run`` only computes the difference (what ``plan`` shows)."""

    dry_run: bool = False


class RollbackBody(BaseModel):
    """Roll back to ``deployment``'s snapshot, or (null) to the newest one that differs from what runs."""

    deployment: int | None = Field(default=None, ge=1, le=2**63 - 1)


class Applied(BaseModel):
    """``ready`` (applied), ``rolled_back`` (a rollout failed: the old version runs), ``unchanged`` or
    ``planned`` (dry run); one line per changed service."""

    outcome: str
    changes: list[str]
    message: str
    duration_s: float


class DownBody(BaseModel):
    """``down`` options."""

    timeout: float | None = Field(default=None, ge=0, le=3600)


class Health(BaseModel):
    """The orchestrator answers; ``phase`` is starting, running, stopping or stopped."""

    ok: bool
    phase: str


class NotReady(BaseModel):
    """A replica that is neither ready nor completed, and why."""

    id: str
    state: str
    reason: str | None = None


class ServiceHealth(BaseModel):
    """One service: healthy when every desired replica is ready, or when it ran to completion."""

    healthy: bool
    state: str
    ready: int
    desired: int
    restarts: int
    not_ready: list[NotReady] = Field(description="the first 20 replicas not ready, with why")


class HealthReport(BaseModel):
    """Per-service health; ``healthy`` when every service is and the phase is running."""

    healthy: bool
    phase: str
    services: dict[str, ServiceHealth]


class ReplicaTop(BaseModel):
    """One replica's process now; the samples are None while it has no process (or on a first read)."""

    id: str
    service: str
    index: int
    state: str
    pid: int | None
    restarts: int
    uptime_s: float | None
    cpu_percent: float | None = Field(description="percent of one core since the previous sample")
    memory_bytes: int | None = Field(description="resident set size")
    open_files: int | None = Field(description="open file descriptors")


class Top(BaseModel):
    """Every replica's resource use, sampled now (``at`` is wall time, seconds since the epoch)."""

    at: float
    replicas: list[ReplicaTop]


class Resolution(IntEnum):
    """Seconds per history point: 1 (the last 10 minutes) or 60 (the last 24 hours)."""

    SECOND = 1
    MINUTE = 60


# [t, mean, max]; a list, not a tuple: a tuple's OpenAPI form (prefixItems) trips some clients.
HistoryPoint = Annotated[list[float], Field(min_length=3, max_length=3)]


class HistorySeries(BaseModel):
    """Points ``[t, mean, max]`` per asked key, oldest first (``t``: wall time of the slot's start);
    ``keys`` lists every key the history holds now, for discovery. An unknown key has no points."""

    keys: list[str]
    series: dict[str, list[HistoryPoint]]


HistoryKey = Annotated[str, Field(min_length=1, max_length=200)]


class Failure(BaseModel):
    """A service that did not get ready, and why."""

    service: str
    reason: str


class Outcome(BaseModel):
    """How the deployment went: ready or failed."""

    outcome: str
    duration_s: float
    failures: list[Failure]


class ServiceList(BaseModel):
    """Every deployed service, in file order."""

    services: list[dict[str, Any]]


class Restarted(BaseModel):
    """Replica ids restarted."""

    restarted: list[str]


class Stopped(BaseModel):
    """Replica ids stopped."""

    stopped: list[str]


class Scaled(BaseModel):
    """The new count and the replica ids added or removed."""

    service: str
    replicas: int
    added: list[str]
    removed: list[str]


class Down(BaseModel):
    """Everything was stopped; the orchestrator ends."""

    down: bool


class EventList(BaseModel):
    """Stored events, oldest first, each with its row ``id`` (pass the last as ``after_id``)."""

    events: list[dict[str, Any]]


class DeploymentList(BaseModel):
    """One row per ``up``, newest first."""

    deployments: list[dict[str, Any]]


_TEXT_200: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "text"}
}


def create_app(
    orch: Orchestrator,
    *,
    tokens: TokenSet | None = None,
    describe: Callable[[], dict[str, object]] | None = None,
) -> FastAPI:
    """Build the app bound to one orchestrator.

    Args:
        orch: the orchestrator the routes read and control.
        tokens: the accepted tokens (TCP); None on the unix socket, whose caller is admin.
        describe: listeners and token names for ``/v1/status`` (``api``); never tokens.
    """
    app = FastAPI(
        title="deploy-code",
        version=__version__,
        openapi_url=None,  # served below, behind the viewer role
        docs_url=None,
        redoc_url=None,
    )
    app.state.tokens = tokens
    install_problem_handlers(app)
    app.add_middleware(BodyLimit)  # bodies over 1 MiB are refused before they are read

    @app.get("/openapi.json", include_in_schema=False, dependencies=[viewer])
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.get("/v1/health", dependencies=[viewer], responses=_problems())
    async def health() -> Health:
        return Health(ok=True, phase=orch.phase)

    @app.get("/v1/health/report", dependencies=[viewer], responses=_problems())
    async def health_report() -> HealthReport:
        """Per service: healthy or not, ready / desired, restarts, and the replicas not ready with why."""
        return HealthReport.model_validate(orch.health_report())

    @app.get("/v1/top", dependencies=[viewer], responses=_problems())
    async def top() -> Top:
        """Each replica's CPU, memory and open files now; keeps the history sampler on for a minute."""
        return Top.model_validate(await orch.top())

    @app.get("/v1/history", dependencies=[viewer], responses=_problems())
    async def history(
        keys: Annotated[list[HistoryKey], Query(default_factory=list, max_length=MAX_HISTORY_KEYS)],
        since: float = Query(600.0, gt=0, le=MAX_HISTORY_SINCE_S, description="seconds back from now"),
        resolution: Resolution = Resolution.SECOND,
    ) -> HistorySeries:
        """Points of the named keys (e.g. ``app.0/cpu_percent``) over the last ``since`` seconds.

        The history is sampled once a second only while someone watches: this call, like ``/v1/top``,
        keeps the sampler on for another minute.
        """
        return HistorySeries.model_validate(orch.history_series(keys, since, float(resolution)))

    @app.get("/v1/status", dependencies=[viewer], responses=_problems())
    async def status() -> dict[str, Any]:
        doc: dict[str, Any] = dict(orch.status())
        doc["api"] = describe() if describe is not None else {}
        return doc

    @app.get("/v1/outcome", dependencies=[viewer], responses=_problems())
    async def outcome() -> Outcome:
        result = await orch.wait_outcome()
        failures = [Failure(service=n, reason=why) for n, why in result.failures]
        return Outcome(outcome=result.outcome, duration_s=result.duration_s, failures=failures)

    @app.get("/v1/services", dependencies=[viewer], responses=_problems())
    async def services() -> ServiceList:
        return ServiceList(services=[svc.snapshot() for svc in orch.services.values()])

    @app.get("/v1/services/{name}", dependencies=[viewer], responses=_problems(404))
    async def service(name: str) -> dict[str, Any]:
        svc = orch.services.get(name)
        if svc is None:
            known = ", ".join(sorted(orch.services)) or "none"
            raise DeployCodeError(
                f"service {name!r} is not deployed", code=ErrorCode.S001, hint=f"deployed services: {known}"
            )
        return svc.snapshot()

    @app.post("/v1/restart", dependencies=[operator], responses=_problems(400, 404))
    async def restart(body: ServicesBody) -> Restarted:
        return Restarted(restarted=orch.restart(body.services))

    @app.post("/v1/stop", dependencies=[operator], responses=_problems(400, 404))
    async def stop(body: ServicesBody) -> Stopped:
        return Stopped(stopped=await orch.stop_services(body.services, body.timeout))

    @app.post("/v1/scale", dependencies=[operator], responses=_problems(400, 404, 409, 501))
    async def scale(body: ScaleBody) -> Scaled:
        method = getattr(orch, "scale", None)
        if method is None:
            raise DeployCodeError("this orchestrator cannot scale services", code=ErrorCode.S008)
        done = method(body.service, body.replicas, body.timeout)
        doc = await done if inspect.isawaitable(done) else done
        return Scaled.model_validate(doc)

    @app.post("/v1/apply", dependencies=[operator], responses=_problems(400, 409))
    async def apply(body: ApplyBody) -> Applied:
        """Re-read the deployment's file and redeploy what changed (rolling, blue-green, recreate)."""
        return Applied.model_validate(await orch.apply(dry_run=body.dry_run))

    @app.post("/v1/rollback", dependencies=[operator], responses=_problems(400, 409))
    async def rollback(body: RollbackBody) -> Applied:
        """Apply an earlier snapshot's file."""
        return Applied.model_validate(await orch.rollback(body.deployment))

    @app.post("/v1/down", dependencies=[admin], responses=_problems(400))
    async def down(body: DownBody) -> Down:
        orch.request_down(body.timeout)
        await orch.wait_finished()
        return Down(down=True)

    @app.get(
        "/v1/logs/{service}",
        response_model=None,
        dependencies=[viewer],
        responses={**_TEXT_200, **_problems(404)},
    )
    async def logs(
        service: str,
        lines: int = Query(100, ge=0, le=MAX_LOG_LINES),
        replica: int | None = Query(None, ge=0),
        follow: bool = False,
    ) -> PlainTextResponse | StreamingResponse:
        """Output lines, prefixed with the replica id; ``follow=true`` keeps streaming new ones."""
        past = await orch.logs(service, lines, replica, partial=not follow)
        if not follow:
            return PlainTextResponse("".join(f"{line}\n" for line in past))

        async def stream() -> AsyncIterator[str]:
            for line in past:
                yield f"{line}\n"
            async for line in orch.follow(service, replica):
                yield f"{line}\n"

        return StreamingResponse(stream(), media_type="text/plain")

    @app.get(
        "/v1/events",
        response_model=None,
        dependencies=[viewer],
        responses={
            200: {
                "model": EventList,
                "content": {NDJSON: {"schema": {"type": "string"}}},
                "description": "a JSON list, or with follow=true one JSON object per line",
            },
            **_problems(),
        },
    )
    async def events(
        limit: int = Query(100, ge=1, le=MAX_EVENTS),
        service: str | None = None,
        kind: str | None = Query(None, max_length=200),
        after_id: int | None = Query(None, ge=0, le=2**63 - 1),  # SQLite integers are 64-bit
        follow: bool = False,
    ) -> EventList | StreamingResponse:
        """Stored events, oldest first; ``follow=true`` streams NDJSON until the orchestrator ends."""
        if follow:
            return StreamingResponse(follow_events(orch, limit, service, kind, after_id), media_type=NDJSON)
        # The store flushes its write queue before reading: off the loop.
        rows = await asyncio.to_thread(
            orch.store.events, limit=limit, service=service, kind=kind, after_id=after_id
        )
        return EventList(events=[row.to_dict() for row in rows])

    @app.get("/v1/deployments", dependencies=[viewer], responses=_problems())
    async def deployments(limit: int = Query(20, ge=1, le=MAX_DEPLOYMENTS)) -> DeploymentList:
        rows = await asyncio.to_thread(orch.store.deployments, limit)
        return DeploymentList(deployments=[row.to_dict() for row in rows])

    @app.get(
        "/metrics",
        dependencies=[viewer],
        response_class=PlainTextResponse,
        responses={**_TEXT_200, **_problems(501)},
    )
    async def metrics() -> Response:
        """Prometheus text exposition of the live state."""
        render = getattr(orch, "metrics_text", None)
        if render is None:
            raise DeployCodeError("this orchestrator does not export metrics", code=ErrorCode.S008)
        text = render()
        if inspect.isawaitable(text):
            text = await text
        return Response(text, media_type=CONTENT_TYPE)

    add_dashboard(app)
    return app
