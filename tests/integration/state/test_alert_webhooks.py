"""Alerts end to end below the CLI: engine -> store + webhook sender -> a real HTTP receiver on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from deploy_code.config import AlertsSpec
from deploy_code.events import Event
from deploy_code.state import StateStore
from deploy_code.supervisor import AlertEngine, ServiceHealth, WebhookSender

FAST = {"initial": "10ms", "max": "50ms", "factor": 2, "jitter": 0.1}


class Receiver:
    """An HTTP server in a thread that answers ``fail_status`` to the first ``fail_first`` POSTs."""

    def __init__(self, fail_first: int = 0, fail_status: int = 500) -> None:
        self.fail_first = fail_first
        self.fail_status = fail_status
        self.requests: list[tuple[str, int, dict[str, Any]]] = []  # (path, status answered, body)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.lock:
                    status = receiver.fail_status if len(receiver.requests) < receiver.fail_first else 204
                    receiver.requests.append((self.path, status, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def delivered(self) -> list[dict[str, Any]]:
        with self.lock:
            return [body for _, status, body in self.requests if status < 300]


@pytest.fixture
def receiver(request: pytest.FixtureRequest) -> Iterator[Receiver]:
    rec = Receiver(**getattr(request, "param", {}))
    rec.thread.start()
    try:
        yield rec
    finally:
        rec.server.shutdown()
        rec.server.server_close()
        rec.thread.join(timeout=5)


class Fanout:
    """The orchestrator's publish: every sink gets every event."""

    def __init__(self, *sinks: Any) -> None:
        self.sinks = sinks

    def __call__(self, event: Event) -> None:
        for sink in self.sinks:
            sink.publish(event)


async def _deliver_all(sender: WebhookSender) -> None:
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(sender.run())
        async with asyncio.timeout(20):
            await sender.drain()
        task.cancel()


@pytest.mark.parametrize("receiver", [{"fail_first": 2}], indirect=True)
async def test_fire_and_resolve_are_retried_delivered_and_recorded(
    receiver: Receiver, tmp_path: Path
) -> None:
    spec = AlertsSpec.model_validate(
        {
            "webhook": {"url": receiver.url + "/hook?token=s3cret", "retries": 3, "backoff": FAST},
            "rules": [{"name": "api-down", "service": "api", "down_for": "5s"}],
        }
    )
    store = StateStore(tmp_path / "state.db")
    sender = WebhookSender(spec, project="shop")
    publish = Fanout(store, sender)
    engine = AlertEngine(spec)
    down = {"api": ServiceHealth("failed", ready=0, desired=2)}
    for t in range(7):
        for event in engine.evaluate(float(t), down, wall=1_000.0 + t):
            publish(event)
    for event in engine.evaluate(8.0, {"api": ServiceHealth("ready", 2, 2)}, wall=1_008.0):
        publish(event)
    await _deliver_all(sender)

    # Two 500s, then both alerts, in order (one worker per webhook: a resolve never overtakes its fire).
    assert [status for _, status, _ in receiver.requests] == [500, 500, 204, 204]
    fired, resolved = receiver.delivered()
    assert fired == {
        "project": "shop",
        "kind": "alert.fired",
        "rule": "api-down",
        "service": "api",
        "condition": "down_for",
        "message": fired["message"],
        "at": 1_005.0,
        "value": 5.0,
        "threshold": 5.0,
    }
    assert (resolved["kind"], resolved["duration_s"], resolved["at"]) == ("alert.resolved", 3.0, 1_008.0)
    assert all(path == "/hook?token=s3cret" for path, _, _ in receiver.requests)
    assert "s3cret" not in json.dumps(receiver.delivered())  # the URL's token never goes in a body
    assert (sender.stats.delivered, sender.stats.failed, sender.stats.attempts) == (2, 0, 4)

    recorded = store.events(kind="alert.*")
    assert [(r.kind, r.service, r.body["rule"]) for r in recorded] == [
        ("alert.fired", "api", "api-down"),
        ("alert.resolved", "api", "api-down"),
    ]
    store.close()


@pytest.mark.parametrize("receiver", [{"fail_first": 100}], indirect=True)
async def test_retries_are_bounded_and_the_give_up_is_logged_without_the_token(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    spec = AlertsSpec.model_validate(
        {
            "rules": [
                {
                    "name": "mem",
                    "memory_above_percent": 50,
                    "webhook": {
                        "url": receiver.url.replace("//", "//user:pw@") + "/x?token=s3cret",
                        "retries": 2,
                        "backoff": FAST,
                    },
                }
            ]
        }
    )
    sender = WebhookSender(spec, project="p")
    for event in AlertEngine(spec).evaluate(
        0.0, {"a": ServiceHealth("ready", 1, 1, memory_percent=(80.0,))}, wall=0.0
    ):
        sender.publish(event)
    with caplog.at_level(logging.WARNING):
        await _deliver_all(sender)
    assert len(receiver.requests) == 3  # one try and two retries
    assert (sender.stats.delivered, sender.stats.failed) == (0, 1)
    assert "gave up" in caplog.text and "HTTP 500" in caplog.text
    assert "s3cret" not in caplog.text and "pw@" not in caplog.text


@pytest.mark.parametrize("receiver", [{"fail_first": 100, "fail_status": 404}], indirect=True)
async def test_a_final_client_error_is_not_retried(receiver: Receiver) -> None:
    spec = AlertsSpec.model_validate(
        {
            "webhook": {"url": receiver.url, "retries": 5, "backoff": FAST},
            "rules": [{"name": "d", "down_for": 0}],
        }
    )
    sender = WebhookSender(spec, project="p")
    for event in AlertEngine(spec).evaluate(0.0, {"a": ServiceHealth("failed", 0, 1)}, wall=0.0):
        sender.publish(event)
    await _deliver_all(sender)
    assert len(receiver.requests) == 1
    assert sender.stats.failed == 1


async def test_connection_refused_is_retried_then_given_up() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = AlertsSpec.model_validate(
        {
            "webhook": {"url": f"http://127.0.0.1:{port}/", "retries": 2, "backoff": FAST},
            "rules": [{"name": "d", "down_for": 0}],
        }
    )
    sender = WebhookSender(spec, project="p")
    for event in AlertEngine(spec).evaluate(0.0, {"a": ServiceHealth("failed", 0, 1)}, wall=0.0):
        sender.publish(event)
    await _deliver_all(sender)
    assert (sender.stats.attempts, sender.stats.failed) == (3, 1)


async def test_pending_deliveries_are_bounded_oldest_dropped(receiver: Receiver) -> None:
    spec = AlertsSpec.model_validate(
        {"webhook": {"url": receiver.url}, "rules": [{"name": "d", "down_for": 0}]}
    )
    sender = WebhookSender(spec, project="p", max_pending=2)
    engine = AlertEngine(spec)
    for i in range(5):  # five services go down before the sender runs: five alerts for two places
        for event in engine.evaluate(0.0, {f"s{i}": ServiceHealth("failed", 0, 1)}, wall=float(i)):
            sender.publish(event)
    await _deliver_all(sender)
    # Each evaluation also resolved the previous service (it left the input): nine alerts, seven dropped.
    assert sender.stats.dropped == 7
    assert [(b["kind"], b["service"]) for b in receiver.delivered()] == [
        ("alert.fired", "s4"),
        ("alert.resolved", "s3"),
    ]


async def test_rules_without_a_webhook_are_only_recorded() -> None:
    spec = AlertsSpec.model_validate({"rules": [{"name": "d", "down_for": 0}]})
    sender = WebhookSender(spec, project="p")
    for event in AlertEngine(spec).evaluate(0.0, {"a": ServiceHealth("failed", 0, 1)}, wall=0.0):
        sender.publish(event)
    await sender.run()  # nothing to deliver: returns at once
    assert sender.stats.attempts == 0
