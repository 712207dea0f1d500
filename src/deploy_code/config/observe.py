"""What the file says about history and alerts: ``retention:`` and ``alerts:``.

``retention`` bounds the state store's tables (events by count and age, deployments by count,
snapshots by count and total bytes). ``alerts`` lists rules the orchestrator evaluates every second;
a rule fires (and later resolves) an event, and POSTs it to a webhook when one is given.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from deploy_code.config.model import _SIZE_SCHEMA, NAME_RE, BackoffSpec, Duration, _Strict
from deploy_code.units import parse_size_bytes

__all__ = ["AlertRule", "AlertsSpec", "RestartRateSpec", "RetentionSpec", "WebhookSpec"]

DAY_S = 86_400.0


class RetentionSpec(_Strict):
    """Bounds of the state store's tables; the oldest rows go first."""

    events_max_count: int = Field(default=10_000, ge=1, le=10_000_000)
    events_max_age: Duration = 7 * DAY_S
    deployments_max: int = Field(default=1_000, ge=1, le=1_000_000)
    snapshots_max_count: int = Field(default=20, ge=1, le=10_000)
    snapshots_max_bytes: Annotated[int, BeforeValidator(parse_size_bytes), WithJsonSchema(_SIZE_SCHEMA)] = (
        10 * 2**20
    )

    @field_validator("events_max_age")
    @classmethod
    def _positive_age(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("events_max_age must be greater than 0")
        return v


class WebhookSpec(_Strict):
    """Where an alert is POSTed (JSON), and how hard to try.

    ``retries`` more attempts follow a failed one (connection error, timeout, 408, 429 or 5xx), each
    after an exponential ``backoff`` with jitter. Another 4xx is final.
    """

    url: str
    timeout: Duration = 5.0
    retries: int = Field(default=5, ge=0, le=100)
    backoff: BackoffSpec = BackoffSpec(initial=0.5, max=30.0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("url must be an http:// or https:// URL with a host")
        _ = parts.port  # raises ValueError for a port that is not a number in 0-65535
        return v

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("timeout must be greater than 0")
        return v


class RestartRateSpec(_Strict):
    """More than ``above`` restarts within ``per``."""

    above: int = Field(ge=0, le=10_000)
    per: Duration

    @field_validator("per")
    @classmethod
    def _positive_window(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("per must be greater than 0")
        return v


_CONDITIONS = ("down_for", "restart_rate", "memory_above_percent")


class AlertRule(_Strict):
    """One rule: exactly one condition, for one service or (without ``service``) for each service."""

    name: str = Field(pattern=NAME_RE)
    service: str | None = None
    down_for: Duration | None = None
    restart_rate: RestartRateSpec | None = None
    memory_above_percent: float | None = Field(default=None, ge=0.0, le=100.0)
    webhook: WebhookSpec | None = None  # None: the `alerts.webhook` default (if any)

    @model_validator(mode="after")
    def _exactly_one(self) -> AlertRule:
        given = [c for c in _CONDITIONS if getattr(self, c) is not None]
        if len(given) != 1:
            raise ValueError(
                "an alert rule needs exactly one of down_for, restart_rate, memory_above_percent"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    @property
    def condition(self) -> str:
        """The condition kind: down_for, restart_rate or memory_above_percent."""
        for c in _CONDITIONS:
            if getattr(self, c) is not None:
                return c
        raise AssertionError("validated rule without a condition")


class AlertsSpec(_Strict):
    """Alert rules plus the default webhook. A plain list is shorthand for ``{rules: [...]}``."""

    webhook: WebhookSpec | None = None
    rules: list[AlertRule] = Field(default_factory=list, max_length=1_000)

    @model_validator(mode="before")
    @classmethod
    def _list_shorthand(cls, data: Any) -> Any:
        if isinstance(data, list):
            return {"rules": data}
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> AlertsSpec:
        seen: set[str] = set()
        dupes: set[str] = set()
        for rule in self.rules:
            (dupes if rule.name in seen else seen).add(rule.name)
        if dupes:
            raise ValueError(f"alert rule names must be unique (repeated: {', '.join(dupes)})")
        return self

    def webhook_for(self, rule: AlertRule) -> WebhookSpec | None:
        """The rule's own webhook, else the default, else None."""
        return rule.webhook or self.webhook
