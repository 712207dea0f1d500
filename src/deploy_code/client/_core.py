"""What the sync and async clients share: where to connect, each operation as data, error mapping.

Each public operation is a :class:`Call` (method, path, body, how to parse the reply), built by a
function here; :class:`~deploy_code.client.AsyncClient` awaits it and :class:`~deploy_code.client.Client`
sends it, so the two cannot drift apart. Errors are mapped once, here: a problem+json reply becomes the
``DeployCodeError`` subclass of its code, a refused connection S002, a timeout E008, any other transport
failure or an unexpected reply E010. No message built here ever contains the bearer token.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import httpx
from pydantic import ValidationError

from deploy_code.api import SOCKET_NAME
from deploy_code.client.models import (
    Event,
    HealthReport,
    LogLine,
    Outcome,
    RestartResult,
    ScaleResult,
    Status,
    StopResult,
)
from deploy_code.config import resolve_state_dir
from deploy_code.errors import (
    ConfigError,
    DependencyError,
    DeployCodeError,
    Diagnostic,
    ErrorCode,
    HealthError,
    Location,
    NetworkError,
    PlacementError,
    RollbackError,
    StartError,
    SupervisionError,
    TimeoutExceeded,
)

__all__ = [
    "Call",
    "MissingRoute",
    "Target",
    "as_names",
    "error_for",
    "make_error",
    "map_transport_errors",
    "parse_reply",
    "resolve_target",
]

T = TypeVar("T")

UNIX_BASE_URL = "http://deploy-code"  # the host is ignored on a unix socket
MAX_ERROR_TEXT = 500  # characters of a non-problem error body kept in a message
_DETAILED = ("resources", "ports", "admission", "api")

_CLASS_BY_CODE: dict[ErrorCode, type[DeployCodeError]] = {
    ErrorCode.E001: ConfigError,
    ErrorCode.E002: ConfigError,
    ErrorCode.E003: ConfigError,
    ErrorCode.E004: PlacementError,
    ErrorCode.E005: StartError,
    ErrorCode.E006: HealthError,
    ErrorCode.E007: DependencyError,
    ErrorCode.E008: TimeoutExceeded,
    ErrorCode.E009: RollbackError,
    ErrorCode.E010: NetworkError,
}


def make_error(
    code: ErrorCode,
    message: str,
    *,
    hint: str | None = None,
    diagnostics: Sequence[Diagnostic] = (),
) -> DeployCodeError:
    """The ``DeployCodeError`` subclass for ``code`` (S-codes are :class:`SupervisionError`), located
    where the first diagnostic is."""
    cls = _CLASS_BY_CODE.get(code, SupervisionError)
    location = diagnostics[0].location if diagnostics else None
    return cls(message, code=code, location=location, hint=hint, diagnostics=diagnostics)


@dataclass(frozen=True, slots=True)
class Target:
    """Where the orchestrator answers: its unix socket, or a TCP base URL with a bearer token.

    The token lives only in the ``Authorization`` header handed to httpx; ``repr`` leaves it out.
    """

    socket: Path | None
    base_url: str
    file: Path | None
    token: str | None = field(default=None, repr=False)
    verify: ssl.SSLContext | str | bool = True

    @property
    def where(self) -> str:
        """The socket path or URL, for messages."""
        return str(self.socket) if self.socket is not None else self.base_url

    def client_options(self, timeout: float | None) -> dict[str, Any]:
        """Keyword arguments for ``httpx.Client`` / ``httpx.AsyncClient`` (less the transport)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token is not None else {}
        return {"base_url": self.base_url, "timeout": timeout, "headers": headers}

    def not_running(self) -> SupervisionError:
        """S002 for this target."""
        if self.socket is not None:
            hint = "start it with Client.deploy() or `deploy-code up --detach`"
        else:
            hint = "check the URL, and that the orchestrator was started with api.listen / --listen"
        return SupervisionError(
            f"no orchestrator is running for this deployment (no answer on {self.where})",
            code=ErrorCode.S002,
            hint=hint,
        )

    def check_socket(self) -> None:
        """Raise S002 at once when the unix socket is not there (no connection attempt needed)."""
        if self.socket is not None and not self.socket.exists():
            raise self.not_running()


@contextlib.contextmanager
def map_transport_errors(target: Target) -> Iterator[None]:
    """Turn httpx / OS errors raised inside the block into coded errors (works around ``await`` too)."""
    try:
        yield
    except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError):
        raise target.not_running() from None
    except httpx.TimeoutException as exc:
        raise TimeoutExceeded(
            f"the orchestrator on {target.where} did not answer in time ({type(exc).__name__})",
            hint="pass a larger timeout= to the client",
        ) from None
    except (httpx.TransportError, OSError) as exc:
        raise NetworkError(f"orchestrator API error on {target.where}: {type(exc).__name__}: {exc}") from None


class MissingRoute(ConfigError):
    """E002 for a path the orchestrator does not serve (HTTP 404): it is older than this client."""


def error_for(status: int, text: str) -> DeployCodeError:
    """The coded error of a problem+json reply (E010 for any other error reply)."""
    try:
        body = json.loads(text)
        code = ErrorCode(body["code"])
        diags = [_diagnostic(e) for e in body.get("errors") or ()]
        detail, hint = str(body.get("detail", "")), body.get("hint")
        if status == 404 and code == ErrorCode.E002:
            return MissingRoute(detail, code=code, hint=hint, diagnostics=diags)
        return make_error(code, detail, hint=hint, diagnostics=diags)
    except (ValueError, KeyError, TypeError):
        return NetworkError(f"orchestrator answered HTTP {status}: {text[:MAX_ERROR_TEXT]}")


def _diagnostic(entry: dict[str, Any]) -> Diagnostic:
    loc = entry.get("location")
    location = (
        Location(str(loc["file"]), loc.get("line"), loc.get("column")) if isinstance(loc, dict) else None
    )
    return Diagnostic(ErrorCode(entry["code"]), str(entry["message"]), location, entry.get("hint"))


def parse_reply(resp: httpx.Response) -> Any:
    """The reply's JSON (or text); an error status raises its coded error."""
    if resp.status_code >= 400:
        raise error_for(resp.status_code, resp.text)
    if resp.headers.get("content-type", "").startswith("application/json"):
        try:
            return resp.json()
        except ValueError:
            raise NetworkError("the orchestrator sent a reply that is not JSON") from None
    return resp.text


def _parsed(parse: Callable[[Any], T]) -> Callable[[Any], T]:
    def run(doc: Any) -> T:
        try:
            return parse(doc)
        except (ValidationError, TypeError, AttributeError) as exc:
            raise NetworkError(
                f"unexpected reply from the orchestrator ({type(exc).__name__})",
                hint="the orchestrator may be a different deploy-code version than this client",
            ) from None

    return run


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One request and how to read its reply. ``unbounded`` calls wait as long as the work takes
    (stop, scale, down: the orchestrator applies its own stop timeouts); connecting stays bounded."""

    method: str
    path: str
    parse: Callable[[Any], T]
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None
    unbounded: bool = False

    def timeout(self, default: float | None) -> httpx.Timeout:
        """The httpx timeout of this call under the client's ``default``."""
        if self.unbounded:
            return httpx.Timeout(default, read=None)
        return httpx.Timeout(default)

    def finish(self, resp: httpx.Response) -> T:
        """Map the status and parse the body."""
        return _parsed(self.parse)(parse_reply(resp))


def _status(detailed: bool) -> Callable[[Any], Status]:
    def parse(doc: Any) -> Status:
        body = dict(doc)
        body["services"] = dict(body.get("services") or {})
        if not detailed:
            for key in _DETAILED:
                body.pop(key, None)
        return Status.model_validate(body)

    return parse


def status_call(*, detailed: bool = False) -> Call[Status]:
    """``GET /v1/status``."""
    return Call("GET", "/v1/status", _status(detailed))


def health_call() -> Call[HealthReport]:
    """``GET /v1/health``: the orchestrator answers, and its phase."""
    return Call("GET", "/v1/health", HealthReport.model_validate)


def health_report_call() -> Call[HealthReport]:
    """``GET /v1/health/report``: per-service health as well."""
    return Call("GET", "/v1/health/report", lambda doc: HealthReport.model_validate({"ok": True, **doc}))


def outcome_call() -> Call[Outcome]:
    """``GET /v1/outcome`` (waits for the outcome: run it with an unbounded read)."""
    return Call("GET", "/v1/outcome", Outcome.model_validate, unbounded=True)


def restart_call(services: Sequence[str]) -> Call[RestartResult]:
    """``POST /v1/restart``."""
    return Call("POST", "/v1/restart", RestartResult.model_validate, json={"services": as_names(services)})


def stop_call(services: Sequence[str], timeout: float | None) -> Call[StopResult]:
    """``POST /v1/stop``."""
    body = {"services": as_names(services), "timeout": timeout}
    return Call("POST", "/v1/stop", StopResult.model_validate, json=body, unbounded=True)


def scale_call(service: str, replicas: int) -> Call[ScaleResult]:
    """``POST /v1/scale``."""
    body = {"service": service, "replicas": replicas}
    return Call("POST", "/v1/scale", ScaleResult.model_validate, json=body, unbounded=True)


def down_call(timeout: float | None) -> Call[None]:
    """``POST /v1/down``: answers once everything is stopped."""
    return Call("POST", "/v1/down", lambda _: None, json={"timeout": timeout}, unbounded=True)


def logs_call(service: str, lines: int, replica: int | None) -> Call[list[LogLine]]:
    """``GET /v1/logs/{service}``."""
    params: dict[str, Any] = {"lines": lines}
    if replica is not None:
        params["replica"] = replica

    def parse(text: Any) -> list[LogLine]:
        return [LogLine.parse(line) for line in str(text).splitlines()]

    return Call("GET", f"/v1/logs/{_path_part(service)}", parse, params=params)


def events_params(service: str | None, kind: str | None, after_id: int | None, limit: int) -> dict[str, Any]:
    """Query of ``GET /v1/events?follow=true`` (``limit``: stored events sent before new ones)."""
    params: dict[str, Any] = {"follow": "true", "limit": limit}
    for key, value in (("service", service), ("kind", kind), ("after_id", after_id)):
        if value is not None:
            params[key] = value
    return params


def event_from_line(line: str) -> Event | None:
    """One NDJSON line as an :class:`Event` (None for a blank keep-alive line)."""
    if not line.strip():
        return None
    return _parsed(Event.model_validate)(_json_line(line))


def _json_line(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        raise NetworkError("the orchestrator sent an event line that is not JSON") from None


def as_names(services: str | Sequence[str]) -> list[str]:
    """A list of service names: ``"api"`` means ``["api"]``, not ``["a", "p", "i"]``."""
    return [services] if isinstance(services, str) else list(services)


def _path_part(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


def resolve_target(
    file: str | Path,
    *,
    state_dir: str | Path | None,
    base_url: str | None,
    token: str | None,
    verify: ssl.SSLContext | str | bool,
) -> Target:
    """The unix socket of ``file``'s state directory, or ``base_url`` (TCP) when given.

    Raises:
        ConfigError: E002 for a token without ``base_url`` (the unix socket takes none).
    """
    path = Path(file).absolute()
    if base_url is not None:
        return Target(None, base_url.rstrip("/"), path, token, verify)
    if token is not None:
        raise ConfigError(
            "a token is only used with base_url (the unix socket needs none)", code=ErrorCode.E002
        )
    directory = resolve_state_dir(path) if state_dir is None else Path(state_dir).absolute()
    return Target(directory / SOCKET_NAME, UNIX_BASE_URL, path, None, verify)
