"""Unit tests for deploy_code.metrics.collector, parsed back with prometheus_client's own parser."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample

from deploy_code.clock import FakeClock
from deploy_code.events import DeploymentFinished, ProbeFailed, ReplicaState, ReplicaTransitioned
from deploy_code.metrics import (
    LevelSample,
    ProcessSampler,
    Recorder,
    ReplicaSample,
    ServiceSample,
    Snapshot,
    build_registry,
    render,
)
from deploy_code.metrics.recorder import READY_BUCKETS

S = ReplicaState


@dataclass
class Source:
    snapshot: Snapshot = field(default_factory=Snapshot)
    calls: int = 0

    def metrics_snapshot(self) -> Snapshot:
        self.calls += 1
        return self.snapshot


def scrape(registry: CollectorRegistry) -> dict[str, list[Sample]]:
    """Family name -> samples, through the real text format and parser."""
    text = render(registry).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def value(families: dict[str, list[Sample]], family: str, name: str, **labels: str) -> float:
    found = [s.value for s in families[family] if s.name == name and s.labels == labels]
    assert len(found) == 1, (family, name, labels, families[family])
    return found[0]


def snap(*names: str, pid: int | None = None) -> Snapshot:
    return Snapshot(
        services=[ServiceSample(n, "ready", 1, 2, 3) for n in names],
        replicas=[ReplicaSample(n, 0, "ready", pid, 1) for n in names],
        levels=[
            LevelSample("local", None, "cpu_cores", 8, 2),
            LevelSample("local", "batch", "memory_mb", 0, 0),
        ],
        queue_length=4,
        loop_lag_s=0.003,
    )


def test_live_state_families() -> None:
    clock = FakeClock()
    src = Source(snap("api", "db", pid=os.getpid()))
    reg = build_registry(src, Recorder(clock), ProcessSampler(clock))
    f = scrape(reg)
    assert src.calls == 1
    assert value(f, "deploy_code_service_up", "deploy_code_service_up", service="api", state="ready") == 1
    assert (
        value(f, "deploy_code_service_replicas_ready", "deploy_code_service_replicas_ready", service="db")
        == 1
    )
    assert (
        value(f, "deploy_code_service_replicas_desired", "deploy_code_service_replicas_desired", service="db")
        == 2
    )
    assert value(f, "deploy_code_service_restarts", "deploy_code_service_restarts_total", service="api") == 3
    assert (
        value(
            f,
            "deploy_code_replica_restarts",
            "deploy_code_replica_restarts_total",
            service="api",
            replica="0",
        )
        == 1
    )
    assert (
        value(
            f,
            "deploy_code_replica_memory_bytes",
            "deploy_code_replica_memory_bytes",
            service="api",
            replica="0",
        )
        > 0
    )
    assert (
        value(
            f, "deploy_code_replica_open_files", "deploy_code_replica_open_files", service="db", replica="0"
        )
        >= 3
    )
    assert f["deploy_code_replica_cpu_percent"] == []  # first read of a pid: no CPU figure yet
    clock.advance(1.0)
    f = scrape(reg)
    assert (
        value(
            f,
            "deploy_code_replica_cpu_percent",
            "deploy_code_replica_cpu_percent",
            service="api",
            replica="0",
        )
        >= 0
    )
    lv = {"node": "local", "pool": "", "resource": "cpu_cores"}
    assert value(f, "deploy_code_resource_capacity", "deploy_code_resource_capacity", **lv) == 8
    assert value(f, "deploy_code_resource_allocated", "deploy_code_resource_allocated", **lv) == 2
    assert value(f, "deploy_code_resource_utilization", "deploy_code_resource_utilization", **lv) == 0.25
    zero = {"node": "local", "pool": "batch", "resource": "memory_mb"}
    assert value(f, "deploy_code_resource_utilization", "deploy_code_resource_utilization", **zero) == 0
    assert value(f, "deploy_code_admission_queue_length", "deploy_code_admission_queue_length") == 4
    assert value(f, "deploy_code_event_loop_lag_seconds", "deploy_code_event_loop_lag_seconds") == 0.003


def test_event_fed_families() -> None:
    clock = FakeClock()
    rec = Recorder(clock)
    rec.publish(DeploymentFinished("up", "ready", 3.0, 0.0))
    rec.publish(DeploymentFinished("up", "failed", 1.0, 0.0))
    rec.publish(ReplicaTransitioned("api", 0, S.PENDING, S.STARTING, "", 10.0))
    rec.publish(ReplicaTransitioned("api", 0, S.STARTING, S.READY, "", 10.2))
    rec.publish(ReplicaTransitioned("api", 0, S.READY, S.BACKOFF, "", 11.0))
    rec.observe_probe("api", "readiness", 0.004, False)
    rec.publish(ProbeFailed("api", 0, "readiness", "boom", 0.0))
    f = scrape(build_registry(Source(snap("api")), rec))
    assert value(f, "deploy_code_deployments", "deploy_code_deployments_total", outcome="ready") == 1
    assert value(f, "deploy_code_deployments", "deploy_code_deployments_total", outcome="failed") == 1
    assert value(f, "deploy_code_deploy_duration_seconds", "deploy_code_deploy_duration_seconds_count") == 2
    assert value(f, "deploy_code_deploy_duration_seconds", "deploy_code_deploy_duration_seconds_sum") == 4
    ready = "deploy_code_ready_latency_seconds"
    buckets = [s for s in f[ready] if s.name == ready + "_bucket"]
    assert [s.labels["le"] for s in buckets][-1] == "+Inf" and len(buckets) == len(READY_BUCKETS)
    assert [s.value for s in buckets] == sorted(s.value for s in buckets)  # cumulative
    assert value(f, ready, ready + "_bucket", service="api", le="0.25") == 1
    assert value(f, ready, ready + "_bucket", service="api", le="0.1") == 0
    assert value(f, ready, ready + "_count", service="api") == 1
    probe = {"service": "api", "probe": "readiness"}
    assert (
        value(f, "deploy_code_probe_duration_seconds", "deploy_code_probe_duration_seconds_count", **probe)
        == 1
    )
    assert value(f, "deploy_code_probe_failures", "deploy_code_probe_failures_total", **probe) == 1
    assert value(f, "deploy_code_probe_success", "deploy_code_probe_success", **probe) == 0
    assert value(f, "deploy_code_restarts", "deploy_code_restarts_total") == 1
    assert value(f, "deploy_code_metrics_dropped_series", "deploy_code_metrics_dropped_series_total") == 0


def test_removed_service_leaves_live_families_at_once_and_history_after_retention() -> None:
    clock = FakeClock()
    rec = Recorder(clock, retention_s=600)
    src = Source(snap("api", "old"))
    reg = build_registry(src, rec)
    rec.observe_probe("api", "readiness", 0.01, True)
    rec.observe_probe("old", "readiness", 0.01, True)
    src.snapshot = snap("api")
    f = scrape(reg)
    assert {s.labels["service"] for s in f["deploy_code_service_up"]} == {"api"}
    assert {s.labels["service"] for s in f["deploy_code_probe_success"]} == {"api", "old"}
    clock.advance(600)  # "api" stays: each scrape touches the services of the live snapshot
    f = scrape(reg)
    assert {s.labels["service"] for s in f["deploy_code_probe_success"]} == {"api"}


def test_snapshot_services_are_capped(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    reg = build_registry(Source(snap(*(f"s{i}" for i in range(5)))), Recorder(clock), max_services=3)
    with caplog.at_level(logging.WARNING, logger="deploy_code.metrics"):
        f = scrape(reg)
        scrape(reg)
    assert {s.labels["service"] for s in f["deploy_code_service_up"]} == {"s0", "s1", "s2"}
    assert {s.labels["service"] for s in f["deploy_code_replica_restarts"]} == {"s0", "s1", "s2"}
    assert value(f, "deploy_code_metrics_omitted_services", "deploy_code_metrics_omitted_services") == 2
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_recorder_cap_is_exposed() -> None:
    rec = Recorder(FakeClock(), max_services=1)
    rec.observe_probe("a", "readiness", 0.01, True)
    rec.observe_probe("b", "readiness", 0.01, True)
    f = scrape(build_registry(Source(), rec))
    assert value(f, "deploy_code_metrics_dropped_series", "deploy_code_metrics_dropped_series_total") == 1


def test_label_values_are_escaped() -> None:
    name = 'we"ird\\name\nx'
    f = scrape(build_registry(Source(snap(name)), Recorder(FakeClock())))
    assert {s.labels["service"] for s in f["deploy_code_service_up"]} == {name}


def test_registration_does_not_scrape() -> None:
    src = Source()
    build_registry(src, Recorder(FakeClock()))
    assert src.calls == 0
