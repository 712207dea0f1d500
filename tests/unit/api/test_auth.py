"""The role dependency and the problem+json mapping, on a small app (no orchestrator needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import Depends, FastAPI
from pydantic import BaseModel

from deploy_code.api import Principal, TokenSet, token_digest
from deploy_code.api.auth import require
from deploy_code.api.problems import PROBLEM, install_problem_handlers
from deploy_code.errors import DeployCodeError, ErrorCode

TOKENS = {"viewer": "tok-view-1", "operator": "tok-oper-2", "admin": "tok-admin-3"}


class Body(BaseModel):
    n: int


def _app(tokens: TokenSet | None) -> FastAPI:
    app = FastAPI()
    app.state.tokens = tokens
    install_problem_handlers(app)

    @app.get("/read")
    async def read(who: Principal = Depends(require("viewer"))) -> dict[str, str]:  # noqa: B008
        return {"name": who.name, "role": who.role}

    @app.post("/change", dependencies=[Depends(require("operator"))])
    async def change(body: Body) -> dict[str, int]:
        return {"n": body.n}

    @app.post("/end", dependencies=[Depends(require("admin"))])
    async def end() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/missing")
    async def missing() -> None:
        raise DeployCodeError("service 'x' is not deployed", code=ErrorCode.S001, hint="deployed: a")

    @app.get("/bug")
    async def bug() -> None:
        raise RuntimeError("internal detail that must stay in the log")

    return app


@pytest.fixture
async def tcp() -> AsyncIterator[httpx.AsyncClient]:
    tokens = TokenSet((role, role, token_digest(tok)) for role, tok in TOKENS.items())  # type: ignore[misc]
    transport = httpx.ASGITransport(app=_app(tokens), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client


def _auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


ROUTES = [
    ("GET", "/read", None, "viewer"),
    ("POST", "/change", {"n": 1}, "operator"),
    ("POST", "/end", None, "admin"),
]
RANK = {"viewer": 0, "operator": 1, "admin": 2}


@pytest.mark.parametrize(("method", "path", "body", "needed"), ROUTES)
@pytest.mark.parametrize("role", ["viewer", "operator", "admin"])
async def test_role_matrix(
    tcp: httpx.AsyncClient, method: str, path: str, body: object, needed: str, role: str
) -> None:
    resp = await tcp.request(method, path, json=body, headers=_auth(role))
    if RANK[role] >= RANK[needed]:
        assert resp.status_code == 200, resp.text
    else:
        assert resp.status_code == 403
        assert resp.headers["content-type"] == PROBLEM
        doc = resp.json()
        assert doc["code"] == "S007" and doc["status"] == 403
        assert f"token {role!r} has role {role}" in doc["detail"]
    assert TOKENS[role] not in resp.text


@pytest.mark.parametrize(("method", "path", "body", "needed"), ROUTES)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
)
async def test_no_or_unknown_token_is_401(
    tcp: httpx.AsyncClient, method: str, path: str, body: object, needed: str, headers: dict[str, str]
) -> None:
    resp = await tcp.request(method, path, json=body, headers=headers)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert resp.json()["code"] == "S007"
    assert "not-a-token" not in resp.text and "dXNlcjpwYXNz" not in resp.text


async def test_the_principal_is_the_token_name(tcp: httpx.AsyncClient) -> None:
    resp = await tcp.get("/read", headers=_auth("operator"))
    assert resp.json() == {"name": "operator", "role": "operator"}


async def test_without_tokens_every_caller_is_admin() -> None:
    transport = httpx.ASGITransport(app=_app(None))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.post("/end")).status_code == 200
        assert (await client.get("/read")).json() == {"name": "unix-socket", "role": "admin"}


async def test_validation_errors_are_e002_without_the_input(tcp: httpx.AsyncClient) -> None:
    resp = await tcp.post("/change", json={"n": "secret-looking-input", "extra": 1}, headers=_auth("admin"))
    assert resp.status_code == 422
    doc = resp.json()
    assert doc["code"] == "E002" and doc["status"] == 422
    assert doc["errors"][0]["message"].startswith("body.n: ")
    assert "secret-looking-input" not in resp.text


async def test_unknown_paths_and_methods_are_problems(tcp: httpx.AsyncClient) -> None:
    resp = await tcp.get("/nowhere")
    assert (resp.status_code, resp.json()["code"]) == (404, "E002")
    resp = await tcp.delete("/read")
    assert (resp.status_code, resp.json()["code"]) == (405, "E002")
    assert resp.headers["content-type"] == PROBLEM


async def test_our_errors_keep_their_code_and_status(tcp: httpx.AsyncClient) -> None:
    resp = await tcp.get("/missing")
    assert resp.status_code == 404
    doc = resp.json()
    assert (doc["code"], doc["title"], doc["hint"]) == ("S001", "service not found", "deployed: a")


async def test_a_bug_is_s009_without_its_text(tcp: httpx.AsyncClient) -> None:
    resp = await tcp.get("/bug")
    assert resp.status_code == 500
    assert resp.json()["code"] == "S009"
    assert "internal detail" not in resp.text
