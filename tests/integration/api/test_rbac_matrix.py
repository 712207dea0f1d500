"""Every endpoint x every caller over real TCP on 127.0.0.1, against a real orchestrator.

No token or an unknown one -> 401 S007; a role below the endpoint's -> 403 S007; otherwise the
endpoint answers (``/metrics`` may answer 501 S008 while the orchestrator renders no metrics). The
last tests check that no token shows up anywhere a caller or an operator can look, then ``down``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.integration.api.support import ADMIN_ENV, RANK, ApiDeployment

ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/v1/health", None, "viewer"),
    ("GET", "/v1/status", None, "viewer"),
    ("GET", "/v1/outcome", None, "viewer"),
    ("GET", "/v1/services", None, "viewer"),
    ("GET", "/v1/services/web", None, "viewer"),
    ("GET", "/v1/logs/web?lines=5", None, "viewer"),
    ("GET", "/v1/events?limit=5", None, "viewer"),
    ("GET", "/v1/deployments", None, "viewer"),
    ("GET", "/metrics", None, "viewer"),
    ("GET", "/openapi.json", None, "viewer"),
    ("POST", "/v1/restart", {"services": ["extra"]}, "operator"),
    ("POST", "/v1/scale", {"service": "extra", "replicas": 1}, "operator"),
    ("POST", "/v1/stop", {"services": ["extra"], "timeout": 1}, "operator"),
    ("POST", "/v1/down", {"timeout": 2}, "admin"),
]
CALLERS = [None, "unknown", "viewer", "operator", "admin"]
# admin's down ends the orchestrator: it is test_admin_can_down, the module's last test.
CASES = [(*e, c) for e in ENDPOINTS for c in CALLERS if (e[1], c) != ("/v1/down", "admin")]


@pytest.mark.parametrize(
    ("method", "path", "body", "needed", "caller"), CASES, ids=[f"{c[0]} {c[1]} {c[4]}" for c in CASES]
)
def test_role_by_endpoint(
    api: ApiDeployment, method: str, path: str, body: dict[str, Any] | None, needed: str, caller: str | None
) -> None:
    resp = api.request(method, path, caller, json=body)
    if caller in (None, "unknown"):
        assert resp.status_code == 401, resp.text
        assert resp.headers["www-authenticate"] == "Bearer"
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["code"] == "S007"
    elif RANK[caller] < RANK[needed]:
        assert resp.status_code == 403, resp.text
        doc = resp.json()
        assert doc["code"] == "S007" and needed in doc["detail"]
    elif path == "/metrics" and resp.status_code == 501:
        assert resp.json()["code"] == "S008"
    else:
        assert resp.status_code == 200, resp.text


def test_status_names_the_listeners_and_token_names(api: ApiDeployment) -> None:
    doc = api.request("GET", "/v1/status", "viewer").json()
    assert doc["api"]["tcp"] == api.url
    assert doc["api"]["tls"] is False
    assert doc["api"]["unix"].endswith("api.sock")
    assert {t["name"]: t["role"] for t in doc["api"]["tokens"]} == {
        "ops": "admin",
        "deployer": "operator",
        "dashboard": "viewer",
    }


def test_scale_answers_with_the_change(api: ApiDeployment) -> None:
    resp = api.request("POST", "/v1/scale", "operator", json={"service": "extra", "replicas": 2})
    assert resp.status_code == 200, resp.text
    assert resp.json()["added"] == ["extra.1"]
    back = api.request("POST", "/v1/scale", "operator", json={"service": "extra", "replicas": 1}).json()
    assert back["removed"] == ["extra.1"]


def test_unknown_service_is_s001(api: ApiDeployment) -> None:
    resp = api.request("GET", "/v1/services/nope", "viewer")
    assert resp.status_code == 404 and resp.json()["code"] == "S001"
    resp = api.request("POST", "/v1/restart", "operator", json={"services": ["nope"]})
    assert resp.status_code == 404 and resp.json()["code"] == "S001"


def test_bad_bodies_are_e002(api: ApiDeployment) -> None:
    resp = api.request("POST", "/v1/scale", "operator", json={"service": "extra", "replicas": -1})
    assert resp.status_code == 422 and resp.json()["code"] == "E002"
    resp = api.request("GET", "/v1/logs/web?lines=10001", "viewer")
    assert resp.status_code == 422 and resp.json()["code"] == "E002"


def test_logs_follow_streams_new_lines(api: ApiDeployment) -> None:
    with (
        httpx.Client(base_url=api.url, timeout=10) as client,
        client.stream("GET", "/v1/logs/web?lines=1&follow=true", headers=api.headers("viewer")) as resp,
    ):
        assert resp.status_code == 200
        lines = []
        for line in resp.iter_lines():
            lines.append(line)
            if len(lines) == 3:
                break
    numbers = [int(line.rsplit(" ", 1)[1]) for line in lines]
    assert numbers == sorted(numbers) and all(line.startswith("web.0 | tick") for line in lines)


def test_events_follow_streams_ndjson_as_events_happen(api: ApiDeployment) -> None:
    with (
        httpx.Client(base_url=api.url, timeout=10) as client,
        client.stream("GET", "/v1/events?limit=1&follow=true", headers=api.headers("viewer")) as resp,
    ):
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/x-ndjson")
        lines = resp.iter_lines()
        first = json.loads(next(lines))
        assert api.request("POST", "/v1/restart", "operator", json={"services": ["extra"]}).status_code == 200
        for line in lines:
            event = json.loads(line)
            assert event["id"] > first["id"]
            if event.get("service") == "extra":  # the restart (extra may have been stopped: a start)
                break


def test_no_token_anywhere(api: ApiDeployment) -> None:
    """Replies (including every 401/403), status, events, logs, the orchestrator log, replica envs."""
    api.assert_no_token_in(*api.seen)
    dep = api.dep
    status = dep.cli("status", "--format", "json", check=True)
    events = api.request("GET", "/v1/events?limit=10000", "admin")
    logs = api.request("GET", "/v1/logs/web?lines=10000", "admin")
    log_file = (dep.state_dir / "orchestrator.log").read_text(errors="replace")
    api.assert_no_token_in(status.stdout, status.stderr, events.text, logs.text, log_file)
    # Replicas never inherit the admin token's variable (up drops it once hashed).
    doc = json.loads(status.stdout)
    pids = [r["pid"] for svc in doc["services"].values() for r in svc["replicas"] if r.get("pid")]
    assert pids
    for pid in pids:
        environ = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        assert ADMIN_ENV not in environ
        api.assert_no_token_in(environ)


def test_admin_can_down(api: ApiDeployment) -> None:
    resp = api.request("POST", "/v1/down", "admin", json={"timeout": 2})
    assert resp.status_code == 200 and resp.json() == {"down": True}
    with pytest.raises(httpx.TransportError):
        api.request("GET", "/v1/health", "admin")
    api.assert_no_token_in((api.dep.state_dir / "orchestrator.log").read_text(errors="replace"))
