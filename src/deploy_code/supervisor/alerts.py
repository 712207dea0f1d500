"""Alert rules from the file, evaluated every second, and webhook delivery of what they fire and resolve.

:class:`AlertEngine` is pure: it takes ``now`` and one :class:`ServiceHealth` per service and returns
``AlertFired`` / ``AlertResolved`` events; the orchestrator publishes them to its sinks, so the store
records both. :class:`WebhookSender` is one of those sinks: ``publish`` only queues (bounded, never
blocks the loop) and :meth:`WebhookSender.run`, owned by the orchestrator's task group, POSTs each alert
as JSON through one pooled ``httpx.AsyncClient``, retrying with exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from deploy_code.clock import Clock, SystemClock
from deploy_code.config import AlertRule, AlertsSpec, WebhookSpec
from deploy_code.events import AlertFired, AlertResolved, Event
from deploy_code.supervisor.backoff import next_delay, replay_rng

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ALERT_INTERVAL_S",
    "AlertEngine",
    "AlertEvent",
    "ServiceHealth",
    "WebhookSender",
    "evaluate_every",
]

log = logging.getLogger(__name__)

ALERT_INTERVAL_S = 1.0  # how often the orchestrator evaluates the rules
MAX_PENDING = 256  # undelivered alerts per webhook; past it the oldest is dropped (and counted)
_NOT_DOWN = frozenset({"stopped", "completed"})  # stopped on purpose, or finished its work
_RETRY_STATUS = frozenset({408, 425, 429})  # plus every 5xx; any other answer is final

AlertEvent = AlertFired | AlertResolved


@dataclass(frozen=True, slots=True)
class ServiceHealth:
    """What the rules look at for one service, sampled by the orchestrator.

    Attributes:
        state: the service's one-word state (``ServiceRuntime.state``: ready, degraded, failed, ...).
        ready: replicas that are READY.
        desired: replicas the file asks for; a service with none is never down.
        restarts: restarts since the service was deployed (a running total; a smaller value than last
            time starts the count afresh).
        memory_percent: each running replica's resident memory as a percentage of the machine's.
    """

    state: str
    ready: int
    desired: int
    restarts: int = 0
    memory_percent: tuple[float, ...] = ()

    @property
    def down(self) -> bool:
        """No replica is ready though some are wanted (and the service was not stopped on purpose)."""
        return self.desired > 0 and self.ready == 0 and self.state not in _NOT_DOWN

    @classmethod
    def from_snapshot(cls, snap: Mapping[str, Any], memory_percent: tuple[float, ...] = ()) -> ServiceHealth:
        """From ``ServiceRuntime.snapshot()`` (the ``status`` view of one service)."""
        return cls(
            state=str(snap["state"]),
            ready=int(snap["ready"]),
            desired=int(snap["desired"]),
            restarts=int(snap.get("restarts", 0)),
            memory_percent=memory_percent,
        )


@dataclass(slots=True)
class _Track:
    """One (rule, service) pair: what its condition needs to remember, and whether it is firing."""

    down_since: float | None = None
    last_restarts: int | None = None
    # Times of recent restarts; only whether there are more than `above` matters, so above + 1 suffice.
    restart_times: deque[float] = field(default_factory=deque)
    firing_since: float | None = None


class AlertEngine:
    """Evaluates the file's alert rules; fires once when a condition becomes true, resolves once after.

    State is kept per (rule, service): bounded by the rules times the deployed services, and dropped
    when a service leaves the input (resolving what fired for it).

    Args:
        spec: the file's ``alerts:``.
    """

    def __init__(self, spec: AlertsSpec) -> None:
        self.spec = spec
        self._tracks: dict[tuple[str, str], _Track] = {}

    @property
    def firing(self) -> dict[tuple[str, str], float]:
        """(rule, service) -> monotonic time it fired, for every alert now firing."""
        return {k: t.firing_since for k, t in self._tracks.items() if t.firing_since is not None}

    def evaluate(self, now: float, services: Mapping[str, ServiceHealth], *, wall: float) -> list[AlertEvent]:
        """One evaluation of every rule against every service it covers.

        Args:
            now: monotonic seconds (durations and windows are measured with it).
            services: the deployed services' health, by name.
            wall: wall time, stamped on the events.

        Returns:
            The alerts that fired or resolved since the last call, in rule order.
        """
        out: list[AlertEvent] = []
        seen: set[tuple[str, str]] = set()
        for rule in self.spec.rules:
            names = [rule.service] if rule.service is not None else list(services)
            for name in names:
                health = services.get(name)
                if health is None:
                    continue
                key = (rule.name, name)
                seen.add(key)
                track = self._tracks.setdefault(key, _Track())
                active, value, threshold, message = _check(rule, track, health, now)
                if active and track.firing_since is None:
                    track.firing_since = now
                    out.append(AlertFired(rule.name, name, rule.condition, message, value, threshold, wall))
                elif not active and track.firing_since is not None:
                    out.append(_resolved(rule, name, track, now, wall, message))
        for key in [k for k in self._tracks if k not in seen]:  # service gone (or no longer covered)
            track = self._tracks.pop(key)
            if track.firing_since is not None:
                rule = next(r for r in self.spec.rules if r.name == key[0])
                out.append(_resolved(rule, key[1], track, now, wall, f"{key[1]} is no longer deployed"))
        return out


def _resolved(
    rule: AlertRule, service: str, track: _Track, now: float, wall: float, why: str
) -> AlertResolved:
    since = track.firing_since if track.firing_since is not None else now
    track.firing_since = None
    return AlertResolved(rule.name, service, rule.condition, why, round(now - since, 3), wall)


def _check(rule: AlertRule, track: _Track, h: ServiceHealth, now: float) -> tuple[bool, float, float, str]:
    """(active, measured value, threshold, message) for one rule and one service."""
    if rule.down_for is not None:
        if not h.down:
            track.down_since = None
            return False, 0.0, rule.down_for, f"{h.ready}/{h.desired} replicas ready"
        if track.down_since is None:
            track.down_since = now
        down = now - track.down_since
        msg = f"no ready replica for {down:.0f}s ({h.state}; down_for {rule.down_for:g}s)"
        return down >= rule.down_for, round(down, 3), rule.down_for, msg
    if rule.restart_rate is not None:
        rate = rule.restart_rate
        if track.restart_times.maxlen != rate.above + 1:
            track.restart_times = deque(maxlen=rate.above + 1)
        new = (
            0
            if track.last_restarts is None or h.restarts < track.last_restarts
            else h.restarts - track.last_restarts
        )
        track.last_restarts = h.restarts
        track.restart_times.extend([now] * min(new, rate.above + 1))
        while track.restart_times and now - track.restart_times[0] > rate.per:
            track.restart_times.popleft()
        count = len(track.restart_times)
        msg = f"{count} restarts within {rate.per:g}s (above {rate.above})"
        return count > rate.above, float(count), float(rate.above), msg
    assert rule.memory_above_percent is not None
    peak = max(h.memory_percent, default=0.0)
    msg = f"replica memory at {peak:.1f}% (above {rule.memory_above_percent:g}%)"
    return peak > rule.memory_above_percent, round(peak, 2), rule.memory_above_percent, msg


async def evaluate_every(
    engine: AlertEngine,
    clock: Clock,
    sample: Callable[[], Mapping[str, ServiceHealth]],
    publish: Callable[[Event], None],
    interval: float = ALERT_INTERVAL_S,
) -> None:
    """Evaluate ``engine`` on ``sample()`` every ``interval`` and publish what it returns; until cancelled.

    Returns at once when the file has no alert rules. Ticks are on a fixed grid from the first one, so a
    slow evaluation does not drift the cadence.
    """
    if not engine.spec.rules:
        return
    deadline = clock.now()
    while True:
        deadline += interval
        await clock.sleep_until(deadline)
        for event in engine.evaluate(clock.now(), sample(), wall=clock.wall_time()):
            publish(event)


@dataclass(slots=True)
class DeliveryStats:
    """Counters of the webhook sender (read by status and tests)."""

    delivered: int = 0
    failed: int = 0  # gave up after the retries, or a final answer such as 404
    dropped: int = 0  # pushed out of a full queue before a delivery was tried
    attempts: int = 0


class WebhookSender:
    """EventSink that POSTs ``AlertFired`` / ``AlertResolved`` to each rule's webhook.

    One worker per distinct webhook keeps that receiver's alerts in order (a resolve never overtakes its
    fire) while a slow receiver delays only its own. The JSON body holds the project, the event kind and
    the alert's own fields: never the webhook URL, environment values or anything from the file beyond
    rule and service names.

    Args:
        spec: the file's ``alerts:`` (rules without a webhook, and no default, are recorded only).
        project: the project name, sent with each alert.
        clock: time source for backoff sleeps.
        max_pending: undelivered alerts kept per webhook (the oldest is dropped past it).
    """

    def __init__(
        self, spec: AlertsSpec, *, project: str, clock: Clock | None = None, max_pending: int = MAX_PENDING
    ) -> None:
        self.project = project
        self.stats = DeliveryStats()
        self._clock: Clock = clock or SystemClock()
        self._routes: dict[str, WebhookSpec] = {}
        self._queues: dict[WebhookSpec, asyncio.Queue[dict[str, Any]]] = {}
        for rule in spec.rules:
            hook = spec.webhook_for(rule)
            if hook is not None:
                self._routes[rule.name] = hook
                self._queues.setdefault(hook, asyncio.Queue(maxsize=max_pending))

    def publish(self, event: Event) -> None:
        """Queue an alert for delivery; other events are ignored. Never blocks."""
        if not isinstance(event, AlertFired | AlertResolved):
            return
        hook = self._routes.get(event.rule)
        if hook is None:
            return
        q = self._queues[hook]
        if q.full():
            q.get_nowait()
            q.task_done()
            self.stats.dropped += 1
            log.warning("webhook %s: queue full, dropped the oldest undelivered alert", _redact(hook.url))
        q.put_nowait(_payload(self.project, event))

    async def run(self) -> None:
        """Deliver queued alerts until cancelled (returns at once when no rule has a webhook)."""
        if not self._queues:
            return
        import httpx  # lazy, as in health.httpclient: `up` reaches its first spawns sooner

        async with (
            httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,
                headers={"User-Agent": "deploy-code-alerts"},
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=8),
            ) as client,
            asyncio.TaskGroup() as tg,
        ):
            for hook, q in self._queues.items():
                tg.create_task(self._worker(client, hook, q), name=f"webhook:{_redact(hook.url)}")

    async def drain(self) -> None:
        """Return once every queued alert was delivered or given up on (wrap it in a timeout)."""
        for q in self._queues.values():
            await q.join()

    async def _worker(
        self, client: httpx.AsyncClient, hook: WebhookSpec, q: asyncio.Queue[dict[str, Any]]
    ) -> None:
        while True:
            payload = await q.get()
            try:
                await self._deliver(client, hook, payload)
            finally:
                q.task_done()

    async def _deliver(self, client: httpx.AsyncClient, hook: WebhookSpec, payload: dict[str, Any]) -> None:
        import httpx

        why = ""
        seed = f"{payload['rule']}/{payload['service']}/{payload['kind']}"
        for attempt in range(hook.retries + 1):
            self.stats.attempts += 1
            try:
                resp = await client.post(hook.url, json=payload, timeout=hook.timeout)
            except httpx.HTTPError as exc:  # connection refused, timeout, reset: worth another try
                why = type(exc).__name__
            else:
                if resp.is_success:
                    self.stats.delivered += 1
                    return
                why = f"HTTP {resp.status_code}"
                if resp.status_code < 500 and resp.status_code not in _RETRY_STATUS:
                    break
            if attempt < hook.retries:
                delay = next_delay(attempt, hook.backoff, replay_rng(seed, attempt))
                await self._clock.sleep_until(self._clock.now() + delay)
        self.stats.failed += 1
        log.warning(
            "webhook %s: gave up on %s %s/%s after %d attempts (%s)",
            _redact(hook.url),
            payload["kind"],
            payload["rule"],
            payload["service"],
            attempt + 1,
            why,
        )


def _payload(project: str, event: AlertFired | AlertResolved) -> dict[str, Any]:
    # An allow-list of fields, so nothing else (tokens in the URL, environment values) can leak.
    body: dict[str, Any] = {
        "project": project,
        "kind": event.kind,
        "rule": event.rule,
        "service": event.service,
        "condition": event.condition,
        "message": event.message,
        "at": event.at,
    }
    if isinstance(event, AlertFired):
        body.update(value=event.value, threshold=event.threshold)
    else:
        body.update(duration_s=event.duration_s)
    return body


def _redact(url: str) -> str:
    """The URL without credentials or query, for logs (a token often sits in either)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
