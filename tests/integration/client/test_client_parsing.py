"""The client's edges without a server: what `up --detach` prints becomes coded errors, problem+json
replies map to the class of their code, and the typed results read the API's JSON."""

from __future__ import annotations

import json

import pytest

from deploy_code.client import Event, LogLine, Status
from deploy_code.client._core import error_for
from deploy_code.client._deploy import deploy_failed, healthy_or_raise
from deploy_code.errors import (
    ConfigError,
    ErrorCode,
    HealthError,
    NetworkError,
    StartError,
    SupervisionError,
)
from deploy_code.events import ReplicaState


def test_config_errors_from_up_keep_every_location_and_hint() -> None:
    stderr = (
        "/p/deploy-code.yaml:5:15: E002 services.web.replicas: must be >= 0\n"
        "    hint: use 0 to deploy none\n"
        "/p/deploy-code.yaml:9:3: E002 services.api: unknown key 'comand'\n"
    )
    err = deploy_failed(2, "", stderr)
    assert isinstance(err, ConfigError) and err.code == ErrorCode.E002
    assert err.location is not None and (err.location.file, err.location.line, err.location.column) == (
        "/p/deploy-code.yaml",
        5,
        15,
    )
    assert [d.hint for d in err.diagnostics] == ["use 0 to deploy none", None]
    assert [d.location.line for d in err.diagnostics if d.location] == [5, 9]


def test_failed_service_quotes_its_output_but_never_reads_codes_from_it() -> None:
    stderr = (
        "E006 service bad could not get ready: exited with status 3\n"
        "    bad.0 | boom: E001 looks like a code but is output\n"
        "the orchestrator keeps running: see `deploy-code status`, or `down`\n"
    )
    err = deploy_failed(1, "", stderr)
    assert isinstance(err, HealthError) and len(err.diagnostics) == 1
    assert "bad.0 | boom" in err.message and err.hint is not None and "down()" in err.hint


def test_uncoded_failure_is_e005_with_the_output_tail() -> None:
    err = deploy_failed(1, "", "Traceback (most recent call last):\nNameError: x\n")
    assert isinstance(err, StartError) and err.code == ErrorCode.E005 and "NameError: x" in err.message


def test_problem_json_maps_to_the_class_of_its_code() -> None:
    body = {
        "type": "about:blank",
        "status": 404,
        "code": "S001",
        "title": "service not found",
        "detail": "service 'nope' is not deployed",
        "hint": "deployed services: api, db",
        "errors": [{"code": "S001", "message": "service 'nope' is not deployed", "hint": None}],
    }
    err = error_for(404, json.dumps(body))
    assert isinstance(err, SupervisionError) and err.code == ErrorCode.S001
    assert err.hint == "deployed services: api, db"
    assert isinstance(error_for(502, "<html>bad gateway</html>"), NetworkError)


def _replica(index: int, state: str) -> dict[str, object]:
    return {"index": index, "id": f"api.{index}", "state": state, "pid": 100 + index, "ports": {"http": 1}}


def _status(*states: str, desired: int = 2) -> Status:
    return Status.model_validate(
        {
            "name": "x",
            "file": "/x.yaml",
            "pid": 1,
            "phase": "running",
            "started_at": 0.0,
            "uptime_s": 1.0,
            "something_newer": {"ignored": True},
            "services": {
                "api": {
                    "name": "api",
                    "state": states[0],
                    "ready": states.count("ready"),
                    "desired": desired,
                    "replicas": [_replica(i, s) for i, s in enumerate(states)],
                }
            },
        }
    )


def test_health_verdict() -> None:
    assert healthy_or_raise(_status("ready", "completed"), None) == []
    assert healthy_or_raise(_status("ready", "starting"), None) == ["api"]
    assert healthy_or_raise(_status("ready", desired=2), None) == ["api"]  # a replica still missing
    with pytest.raises(HealthError) as failed:
        healthy_or_raise(_status("ready", "failed"), ["api"])
    assert failed.value.code == ErrorCode.E006
    with pytest.raises(SupervisionError) as unknown:
        healthy_or_raise(_status("ready", "ready"), ["db"])
    assert unknown.value.code == ErrorCode.S001


def test_event_and_log_line_shapes() -> None:
    event = Event.model_validate(
        {
            "id": 7,
            "kind": "replica.transition",
            "at": 1.5,
            "service": "api",
            "replica": 0,
            "old": "starting",
            "new": "ready",
            "reason": "readiness passed",
        }
    )
    assert (event.id, event.service, event.replica) == (7, "api", 0)
    assert event.data == {"old": "starting", "new": "ready", "reason": "readiness passed"}
    assert LogLine.parse("api.1 | hello | world") == LogLine(replica="api.1", text="hello | world")
    assert _status("ready", "ready").services["api"].replicas[1].state == ReplicaState.READY
