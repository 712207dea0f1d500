"""The dashboard's routes on the real app over a small stand-in orchestrator: /v1/health/report,
/v1/top, /v1/history (roles, validation as problems) and the page with its files (no token, no
traversal)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

import httpx
import pytest

from deploy_code.api import TokenSet, token_digest
from deploy_code.api.app import MAX_HISTORY_KEYS, create_app
from deploy_code.api.dashboard import STATIC_DIR, STATIC_FILES
from deploy_code.api.problems import PROBLEM

VIEWER = "tok-view-1"
REPORT = {
    "healthy": False,
    "phase": "running",
    "services": {
        "web": {"healthy": True, "state": "ready", "ready": 2, "desired": 2, "restarts": 1, "not_ready": []},
        "db": {
            "healthy": False,
            "state": "backoff",
            "ready": 0,
            "desired": 1,
            "restarts": 3,
            "not_ready": [{"id": "db.0", "state": "backoff", "reason": "exited 1"}],
        },
    },
}
TOP = {
    "at": 1_700_000_000.5,
    "replicas": [
        {
            "id": "web.0",
            "service": "web",
            "index": 0,
            "state": "ready",
            "pid": 4242,
            "restarts": 1,
            "uptime_s": 12.5,
            "cpu_percent": 3.5,
            "memory_bytes": 12_345_678,
            "open_files": 7,
        },
        {
            "id": "db.0",
            "service": "db",
            "index": 0,
            "state": "backoff",
            "pid": None,
            "restarts": 3,
            "uptime_s": None,
            "cpu_percent": None,
            "memory_bytes": None,
            "open_files": None,
        },
    ],
}


class StandIn:
    """What the three routes read from an orchestrator, with the calls recorded."""

    phase = "running"

    def __init__(self) -> None:
        self.history_calls: list[tuple[list[str], float, float]] = []

    def health_report(self) -> dict[str, object]:
        return REPORT

    async def top(self) -> dict[str, object]:
        return TOP

    def history_series(self, keys: Iterable[str], since_s: float, resolution: float) -> dict[str, object]:
        keys = list(keys)
        self.history_calls.append((keys, since_s, resolution))
        series = {
            k: [[1_700_000_000.0, 1.5, 2.0], [1_700_000_001.0, 2.5, 3.0]]
            for k in keys
            if k.startswith("web.0")
        }
        return {"keys": ["web.0/cpu_percent", "web/ready"], "series": {k: series.get(k, []) for k in keys}}


@pytest.fixture
def orch() -> StandIn:
    return StandIn()


@pytest.fixture
async def client(orch: StandIn) -> AsyncIterator[httpx.AsyncClient]:
    tokens = TokenSet([("dash", "viewer", token_digest(VIEWER))])
    app = create_app(orch, tokens=tokens)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
        yield c


AUTH = {"Authorization": f"Bearer {VIEWER}"}
DATA_ROUTES = ["/v1/health/report", "/v1/top", "/v1/history?keys=web.0/cpu_percent"]


@pytest.mark.parametrize("path", DATA_ROUTES)
async def test_data_routes_need_a_token(client: httpx.AsyncClient, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        resp = await client.get(path, headers=headers)
        assert resp.status_code == 401
        assert resp.headers["content-type"] == PROBLEM
        assert resp.json()["code"] == "S007"


async def test_health_report(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/health/report", headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.json() == REPORT


async def test_top(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/top", headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.json() == TOP


async def test_history_passes_keys_since_and_resolution(client: httpx.AsyncClient, orch: StandIn) -> None:
    resp = await client.get(
        "/v1/history",
        params=[("keys", "web.0/cpu_percent"), ("keys", "nope/x"), ("since", "120"), ("resolution", "60")],
        headers=AUTH,
    )
    assert resp.status_code == 200, resp.text
    doc = resp.json()
    assert doc["keys"] == ["web.0/cpu_percent", "web/ready"]
    assert doc["series"] == {
        "web.0/cpu_percent": [[1_700_000_000.0, 1.5, 2.0], [1_700_000_001.0, 2.5, 3.0]],
        "nope/x": [],
    }
    assert orch.history_calls == [(["web.0/cpu_percent", "nope/x"], 120.0, 60.0)]


async def test_history_defaults(client: httpx.AsyncClient, orch: StandIn) -> None:
    resp = await client.get("/v1/history", headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"keys": ["web.0/cpu_percent", "web/ready"], "series": {}}
    assert orch.history_calls == [([], 600.0, 1.0)]


@pytest.mark.parametrize(
    ("params", "where"),
    [
        ([("resolution", "5")], "query.resolution"),
        ([("resolution", "minute")], "query.resolution"),
        ([("since", "86401")], "query.since"),
        ([("since", "0")], "query.since"),
        ([("since", "soon")], "query.since"),
        ([("keys", f"k{i}") for i in range(MAX_HISTORY_KEYS + 1)], "query.keys"),
        ([("keys", "x" * 201)], "query.keys"),
        ([("keys", "")], "query.keys"),
    ],
    ids=[
        "resolution-5",
        "resolution-word",
        "since-too-far",
        "since-zero",
        "since-word",
        "65-keys",
        "long-key",
        "empty-key",
    ],
)
async def test_history_validation_is_a_problem(
    client: httpx.AsyncClient, orch: StandIn, params: list[tuple[str, str]], where: str
) -> None:
    resp = await client.get("/v1/history", params=params, headers=AUTH)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == PROBLEM
    doc = resp.json()
    assert doc["code"] == "E002"
    assert any(e["message"].startswith(where) for e in doc["errors"]), doc
    assert "x" * 201 not in resp.text  # the submitted value is not echoed
    assert orch.history_calls == []


async def test_history_accepts_the_limit(client: httpx.AsyncClient, orch: StandIn) -> None:
    params = [("keys", f"k{i}") for i in range(MAX_HISTORY_KEYS)] + [("since", "86400")]
    resp = await client.get("/v1/history", params=params, headers=AUTH)
    assert resp.status_code == 200, resp.text
    assert len(orch.history_calls[0][0]) == MAX_HISTORY_KEYS


async def test_page_and_files_need_no_token(client: httpx.AsyncClient) -> None:
    page = await client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    for name in ("dashboard.js", "dashboard.css"):
        assert f'"/dashboard/static/{name}"' in page.text
        resp = await client.get(f"/dashboard/static/{name}")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith(STATIC_FILES[name].split(";")[0])
        assert resp.content == (STATIC_DIR / name).read_bytes()


async def test_the_served_files_are_the_static_dir() -> None:
    assert {p.name for p in STATIC_DIR.iterdir()} == set(STATIC_FILES)


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/static/nope.js",
        "/dashboard/static/..%2Fapp.py",
        "/dashboard/static/%2E%2E%2F%2E%2E%2Fapp.py",
        "/dashboard/static/../dashboard.py",
        "/dashboard/static/../../app.py",
        "/dashboard/static/.",
        "/dashboard/static/",
        "/dashboard/static/sub/dashboard.js",
        "/dashboard/static/%2Fetc%2Fpasswd",
    ],
)
async def test_nothing_else_is_served(client: httpx.AsyncClient, path: str) -> None:
    resp = await client.get(path)
    assert resp.status_code == 404, resp.text
    assert resp.headers["content-type"] == PROBLEM
    assert resp.json()["code"] == "E002"


async def test_dashboard_is_not_in_the_openapi_document(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json", headers=AUTH)).json()["paths"]
    assert "/dashboard" not in paths and "/dashboard/static/{name}" not in paths
    for path in ("/v1/health/report", "/v1/top", "/v1/history"):
        assert set(paths[path]["get"]["responses"]) >= {"200", "401", "403", "422"}
