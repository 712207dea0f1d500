"""FastAPI routes over the orchestrator. Errors leave as problem+json carrying our codes."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from pydantic import BaseModel, Field

from deploy_code import __version__
from deploy_code.errors import DeployCodeError, ErrorCode
from deploy_code.supervisor import Orchestrator

__all__ = ["create_app"]

_STATUS_BY_CODE = {ErrorCode.S001: 404, ErrorCode.E002: 400, ErrorCode.S004: 409, ErrorCode.S003: 409}
MAX_LOG_LINES = 10_000  # per request; `logs -n` beyond this is refused


class ServicesBody(BaseModel):
    """A list of service names, with an optional stop timeout."""

    services: list[str] = Field(min_length=1, max_length=10_000)
    timeout: float | None = Field(default=None, ge=0, le=3600)


class DownBody(BaseModel):
    """``down`` options."""

    timeout: float | None = Field(default=None, ge=0, le=3600)


def create_app(orch: Orchestrator) -> FastAPI:
    """Build the app bound to one orchestrator."""
    app = FastAPI(title="deploy-code", version=__version__)

    @app.exception_handler(DeployCodeError)
    async def _problem(_: Request, exc: DeployCodeError) -> JSONResponse:
        return JSONResponse(
            exc.to_dict(),
            status_code=_STATUS_BY_CODE.get(exc.code, 422),
            media_type="application/problem+json",
        )

    @app.get("/v1/health")
    async def health() -> dict[str, object]:
        return {"ok": True, "phase": orch.phase}

    @app.get("/v1/status")
    async def status() -> dict[str, object]:
        return orch.status()

    @app.get("/v1/outcome")
    async def outcome() -> dict[str, object]:
        result = await orch.wait_outcome()
        return {
            "outcome": result.outcome,
            "duration_s": result.duration_s,
            "failures": [{"service": n, "reason": why} for n, why in result.failures],
        }

    @app.post("/v1/restart")
    async def restart(body: ServicesBody) -> dict[str, object]:
        return {"restarted": orch.restart(body.services)}

    @app.post("/v1/stop")
    async def stop(body: ServicesBody) -> dict[str, object]:
        return {"stopped": await orch.stop_services(body.services, body.timeout)}

    @app.post("/v1/down")
    async def down(body: DownBody) -> dict[str, object]:
        orch.request_down(body.timeout)
        await orch.wait_finished()
        return {"down": True}

    @app.get("/v1/logs/{service}", response_model=None)
    async def logs(
        service: str, lines: int = 100, replica: int | None = None, follow: bool = False
    ) -> PlainTextResponse | StreamingResponse:
        lines = max(0, min(lines, MAX_LOG_LINES))
        past = await orch.logs(service, lines, replica)
        if not follow:
            return PlainTextResponse("".join(f"{line}\n" for line in past))

        async def stream() -> AsyncIterator[str]:
            for line in past:
                yield f"{line}\n"
            async for line in orch.follow(service, replica):
                yield f"{line}\n"

        return StreamingResponse(stream(), media_type="text/plain")

    return app
