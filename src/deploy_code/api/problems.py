"""Every error leaves the API as ``application/problem+json`` carrying one of our codes.

The body is :meth:`DeployCodeError.to_dict` plus RFC 9457's ``type`` and ``status``. Request
validation (HTTP 422) is E002 with one entry per problem, located by its ``loc``; the submitted values
are never echoed (a request could carry a secret in the wrong field). Unknown paths and methods are
E002 too. Anything unexpected is S009 (HTTP 500); its text and traceback go to the log, not the reply.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from deploy_code.errors import DeployCodeError, Diagnostic, ErrorCode

__all__ = ["PROBLEM", "Problem", "install_problem_handlers", "problem_response", "status_for"]

PROBLEM = "application/problem+json"

_STATUS_BY_CODE: dict[ErrorCode, int] = {
    ErrorCode.E002: 400,
    ErrorCode.E004: 409,
    ErrorCode.E008: 504,
    ErrorCode.S001: 404,
    ErrorCode.S002: 503,
    ErrorCode.S003: 409,
    ErrorCode.S004: 409,
    ErrorCode.S007: 403,
    ErrorCode.S008: 501,
    ErrorCode.S009: 500,
}


class ProblemEntry(BaseModel):
    """One diagnostic."""

    code: str
    message: str
    location: dict[str, Any] | None = None
    hint: str | None = None


class Problem(BaseModel):
    """An error: ``code`` is stable (docs/errors.md), ``detail`` says what happened."""

    type: str = "about:blank"
    status: int
    code: str
    title: str
    detail: str
    hint: str | None = None
    errors: list[ProblemEntry]


def status_for(exc: DeployCodeError) -> int:
    """The HTTP status of an error (an explicit ``http_status`` attribute wins)."""
    explicit = getattr(exc, "http_status", None)
    if isinstance(explicit, int):
        return explicit
    return _STATUS_BY_CODE.get(exc.code, 409)


def problem_response(
    exc: DeployCodeError, status: int | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """``exc`` as a problem+json response."""
    code = status if status is not None else status_for(exc)
    body = {"type": "about:blank", "status": code, **exc.to_dict()}
    return JSONResponse(body, status_code=code, media_type=PROBLEM, headers=headers)


def _validation_problem(exc: RequestValidationError) -> DeployCodeError:
    diags = []
    for err in exc.errors()[:50]:  # bounded: a huge body must not produce a huge reply
        loc = ".".join(str(p) for p in err.get("loc", ()))
        diags.append(Diagnostic(ErrorCode.E002, f"{loc}: {err.get('msg', 'invalid')}"))
    if not diags:
        diags.append(Diagnostic(ErrorCode.E002, "invalid request"))
    return DeployCodeError.from_diagnostics(diags)


def install_problem_handlers(app: FastAPI) -> None:
    """Map every exception the app can raise to a problem+json response."""

    @app.exception_handler(DeployCodeError)
    async def _ours(_: Request, exc: DeployCodeError) -> JSONResponse:
        headers = getattr(exc, "headers", None)
        return problem_response(exc, headers=headers if isinstance(headers, dict) else None)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return problem_response(_validation_problem(exc), 422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        hint: str | None = "GET /openapi.json lists every operation"
        if exc.status_code == 404:
            msg = f"no such path: {request.url.path}"
        elif exc.status_code == 405:
            msg = f"{request.method} is not allowed on {request.url.path}"
        else:  # e.g. 400 "There was an error parsing the body"
            msg, hint = str(exc.detail), None
        err = DeployCodeError(msg, code=ErrorCode.E002, hint=hint)
        return problem_response(err, exc.status_code, headers=dict(exc.headers or {}))

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after this reply, and uvicorn logs the traceback: not logged twice here.
        err = DeployCodeError(
            "unexpected error while answering this request",
            code=ErrorCode.S009,
            hint="this is a bug: the orchestrator log has the traceback",
        )
        return problem_response(err, 500)
