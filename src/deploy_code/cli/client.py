"""A small client of the orchestrator's unix-socket API (httpx, imported on first use)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from deploy_code.api import SOCKET_NAME
from deploy_code.errors import DeployCodeError, Diagnostic, ErrorCode, SupervisionError

__all__ = ["ApiClient"]


class ApiClient:
    """Talks to the orchestrator of one state directory.

    Args:
        state_dir: the deployment's state directory (holds ``api.sock``).
        timeout: seconds for each request (None for no limit, e.g. ``down``).
    """

    def __init__(self, state_dir: Path, timeout: float | None = 30.0) -> None:
        import httpx  # ~100 ms: only commands that talk to a running orchestrator pay it

        self._httpx = httpx
        self.socket = state_dir / SOCKET_NAME
        self._client = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.socket)),
            base_url="http://deploy-code",
            timeout=timeout,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _not_running(self) -> SupervisionError:
        return SupervisionError(
            f"no orchestrator is running for this deployment (no answer on {self.socket})",
            code=ErrorCode.S002,
            hint="start it with `deploy-code up` (add --detach to run it in the background)",
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request; API errors come back as DeployCodeError with their code."""
        if not self.socket.exists():
            raise self._not_running()
        try:
            resp = self._client.request(method, path, **kwargs)
        except (self._httpx.ConnectError, FileNotFoundError, ConnectionRefusedError):
            raise self._not_running() from None
        except self._httpx.TransportError as exc:
            raise DeployCodeError(f"orchestrator API error: {exc}", code=ErrorCode.E010) from None
        if resp.status_code >= 400:
            raise _error_from(resp.status_code, resp.text)
        if resp.headers.get("content-type", "").startswith("application/json"):
            return resp.json()
        return resp.text

    def stream(self, path: str, **params: Any) -> Iterator[str]:
        """Yield lines of a streamed text response."""
        if not self.socket.exists():
            raise self._not_running()
        try:
            with self._client.stream("GET", path, params=params, timeout=None) as resp:
                if resp.status_code >= 400:
                    raise _error_from(resp.status_code, resp.read().decode(errors="replace"))
                yield from resp.iter_lines()
        except (self._httpx.ConnectError, FileNotFoundError, ConnectionRefusedError):
            raise self._not_running() from None


def _error_from(status: int, text: str) -> DeployCodeError:
    import json

    try:
        body = json.loads(text)
        code = ErrorCode(body["code"])
        diags = [
            Diagnostic(ErrorCode(e["code"]), e["message"], None, e.get("hint"))
            for e in body.get("errors", [])
        ]
        return DeployCodeError(body.get("detail", text), code=code, hint=body.get("hint"), diagnostics=diags)
    except (ValueError, KeyError, TypeError):
        return DeployCodeError(f"orchestrator answered {status}: {text[:500]}", code=ErrorCode.E010)
