"""Bearer-token authentication and role checks, as a FastAPI dependency per route.

Each route states the least role it needs (``Depends(require("operator"))``). On the unix socket the
app has no token set and every caller is :data:`~deploy_code.api.tokens.LOCAL` (admin). On TCP:

* no ``Authorization: Bearer ...`` header, or a token whose digest is unknown -> 401 (S007);
* a known token whose role is below the route's -> 403 (S007), naming the token's *name*.

Replies never contain the presented token, and nothing here logs it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from deploy_code.api.tokens import LOCAL, Principal, Role, TokenSet
from deploy_code.errors import ErrorCode, SupervisionError

__all__ = ["AccessDenied", "bearer", "require"]

bearer = HTTPBearer(
    auto_error=False,
    description="Required on the TCP listener (api.listen); the unix socket ignores it.",
)


class AccessDenied(SupervisionError):
    """401 (no or unknown token) or 403 (role too low); code S007."""

    def __init__(self, message: str, *, http_status: int, hint: str) -> None:
        super().__init__(message, code=ErrorCode.S007, hint=hint)
        self.http_status = http_status
        self.headers = {"WWW-Authenticate": "Bearer"} if http_status == 401 else None


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency that admits callers whose role is ``role`` or above, and returns who they are."""

    async def check(
        request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
    ) -> Principal:
        tokens: TokenSet | None = request.app.state.tokens
        if tokens is None:
            return LOCAL
        if creds is None:
            raise AccessDenied(
                "this listener requires a bearer token",
                http_status=401,
                hint="send `Authorization: Bearer TOKEN` with a token listed in api.tokens",
            )
        who = tokens.identify(creds.credentials)
        if who is None:
            raise AccessDenied(
                "the bearer token is not one of api.tokens",
                http_status=401,
                hint="check the token (the configuration holds its sha256, env variable or file)",
            )
        if not who.allows(role):
            raise AccessDenied(
                f"token {who.name!r} has role {who.role}; this operation needs {role}",
                http_status=403,
                hint="use a token with a higher role (viewer < operator < admin)",
            )
        return who

    check.__name__ = f"require_{role}"
    return check
