"""The prometheus_client collector: reads live state, the recorder and process samples at scrape time.

Wiring (done once in the composition root)::

    recorder = Recorder(clock)                       # add to the orchestrator's event sinks
    sampler = ProcessSampler(clock)
    registry = build_registry(orchestrator, recorder, sampler)
    body = render(registry)                          # GET /metrics, content type CONTENT_TYPE

Nothing is formatted between scrapes: each scrape asks the source for a :class:`Snapshot`, copies the
recorder's tables and reads (rate-bounded) process samples, then builds metric families that
``prometheus_client.generate_latest`` turns into text. A service that leaves the snapshot leaves the
live families at once; its event-fed series (ready latency, probes) stay until the recorder's retention
drops them.

Exposed families (all prefixed ``deploy_code_``):

=========================================  ======================  =================================
name                                       labels                  source
=========================================  ======================  =================================
service_up (gauge, 1)                      service, state          snapshot
service_replicas_ready / _desired          service                 snapshot
service_restarts_total                     service                 snapshot
replica_restarts_total                     service, replica        snapshot
replica_cpu_percent / _memory_bytes /      service, replica        ProcessSampler (rate-bounded)
replica_open_files
resource_capacity / _allocated /           node, pool, resource    snapshot (``pool=""`` for a node)
resource_utilization
admission_queue_length                     -                       snapshot
event_loop_lag_seconds                     -                       snapshot
deployments_total                          outcome                 recorder
deploy_duration_seconds (histogram)        -                       recorder
ready_latency_seconds (histogram)          service                 recorder
probe_duration_seconds (histogram)         service, probe          recorder
probe_failures_total                       service, probe          recorder
probe_success (gauge, last run 0/1)        service, probe          recorder
restarts_total                             -                       recorder (survives removals)
metrics_dropped_series_total               -                       recorder (label cap)
metrics_omitted_services                   -                       this collector (label cap)
=========================================  ======================  =================================

Cardinality: at most ``max_services`` services of a snapshot are exposed (the rest are counted in
``deploy_code_metrics_omitted_services`` and one warning is logged); the recorder has its own cap.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.utils import floatToGoString

from deploy_code.metrics.process import ProcessSampler
from deploy_code.metrics.recorder import DEFAULT_MAX_SERVICES, HistogramView, Recorder
from deploy_code.metrics.source import MetricsSource

__all__ = ["CONTENT_TYPE", "MetricsCollector", "build_registry", "render"]

log = logging.getLogger("deploy_code.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST
P = "deploy_code_"

# prometheus_client's own float formatting ("+Inf", "0.005", "1.0"), so our ``le`` match its histograms.
_go_float: Callable[[float], str] = floatToGoString
# ``le`` strings per bounds tuple, formatted once per process (the bounds are module constants).
_LE_CACHE: dict[tuple[float, ...], tuple[str, ...]] = {}


def _le(bounds: tuple[float, ...]) -> tuple[str, ...]:
    les = _LE_CACHE.get(bounds)
    if les is None:
        les = _LE_CACHE[bounds] = tuple(_go_float(b) for b in bounds)
    return les


def _add_histogram(family: Metric, labels: dict[str, str], h: HistogramView) -> None:
    """Append one histogram's samples as ``HistogramMetricFamily.add_metric`` would: cumulative
    ``_bucket`` samples ending at ``+Inf``, then ``_count`` (the ``+Inf`` bucket) and ``_sum``."""
    name = family.name
    bucket = name + "_bucket"
    total = 0
    for le, n in zip(_le(h.bounds), h.counts, strict=True):
        total += n
        family.add_sample(bucket, {**labels, "le": le}, total)
    family.add_sample(name + "_count", labels, total)
    family.add_sample(name + "_sum", labels, h.sum)


class MetricsCollector(Collector):
    """A custom collector over a :class:`MetricsSource`, a :class:`Recorder` and a :class:`ProcessSampler`.

    Args:
        source: the orchestrator (anything with ``metrics_snapshot()``).
        recorder: the event-fed totals and histograms.
        sampler: process sampler; None leaves out the per-replica CPU / memory / open-files families.
        max_services: the most services of one snapshot exposed.
    """

    def __init__(
        self,
        source: MetricsSource,
        recorder: Recorder,
        sampler: ProcessSampler | None = None,
        *,
        max_services: int = DEFAULT_MAX_SERVICES,
    ) -> None:
        self._source = source
        self._recorder = recorder
        self._sampler = sampler
        self.max_services = max_services
        self._warned = False

    def describe(self) -> list[Metric]:
        """Empty families with our names, so a registry can detect clashes without scraping."""
        return _Families().all()

    def collect(self) -> Iterator[Metric]:
        """Build every family from the live state (called by the registry on each scrape)."""
        snap = self._source.metrics_snapshot()
        services = snap.services
        omitted = max(0, len(services) - self.max_services)
        if omitted:
            services = services[: self.max_services]
            if not self._warned:
                self._warned = True
                log.warning(
                    "metrics: %d services exceed max_services=%d; the rest are left out of /metrics "
                    "(deploy_code_metrics_omitted_services; this warning is logged once)",
                    len(snap.services),
                    self.max_services,
                )
        names = [s.name for s in services]
        # Running services stay tracked however long they go without events.
        self._recorder.touch(names)
        view = self._recorder.view()
        f = _Families()

        # One label dict per service / replica, shared by its samples in every family: the
        # exposition only reads them, and this halves the collector's own cost per sample.
        up, ready, desired, restarts = f.up, f.ready, f.desired, f.restarts
        up_n, ready_n, desired_n, restarts_n = up.name, ready.name, desired.name, restarts.name + "_total"
        for s in services:
            labels = {"service": s.name}
            up.add_sample(up_n, {"service": s.name, "state": s.state}, 1.0)
            ready.add_sample(ready_n, labels, s.ready)
            desired.add_sample(desired_n, labels, s.desired)
            restarts.add_sample(restarts_n, labels, s.restarts)

        shown = set(names) if omitted else None
        replicas = [r for r in snap.replicas if shown is None or r.service in shown]
        procs = self._sampler.sample(r.pid for r in replicas if r.pid is not None) if self._sampler else {}
        rr, cpu, mem, fds = f.replica_restarts, f.cpu, f.mem, f.fds
        rr_n, cpu_n, mem_n, fds_n = rr.name + "_total", cpu.name, mem.name, fds.name
        for r in replicas:
            labels = {"service": r.service, "replica": str(r.index)}
            rr.add_sample(rr_n, labels, r.restarts)
            p = procs.get(r.pid) if r.pid is not None else None
            if p is None:
                continue
            if p.cpu_percent is not None:
                cpu.add_sample(cpu_n, labels, p.cpu_percent)
            mem.add_sample(mem_n, labels, p.memory_bytes)
            fds.add_sample(fds_n, labels, p.open_files)

        for lv in snap.levels:
            labels = {"node": lv.node, "pool": lv.pool or "", "resource": lv.resource}
            f.capacity.add_sample(f.capacity.name, labels, lv.capacity)
            f.allocated.add_sample(f.allocated.name, labels, lv.allocated)
            f.utilization.add_sample(f.utilization.name, labels, lv.utilization)
        f.queue.add_metric([], snap.queue_length)
        f.lag.add_metric([], snap.loop_lag_s)

        for outcome, n in sorted(view.deployments.items()):
            f.deployments.add_metric([outcome], n)
        _add_histogram(f.deploy_duration, {}, view.deploy_duration)
        pf, ps = f.probe_failures, f.probe_success
        pf_n, ps_n = pf.name + "_total", ps.name
        for sv in view.services:
            if sv.ready_latency is not None:
                _add_histogram(f.ready_latency, {"service": sv.name}, sv.ready_latency)
            for pv in sv.probes:
                labels = {"service": sv.name, "probe": pv.probe}
                if pv.duration is not None:
                    _add_histogram(f.probe_duration, labels, pv.duration)
                pf.add_sample(pf_n, labels, pv.failures)
                if pv.last_ok is not None:
                    ps.add_sample(ps_n, labels, 1.0 if pv.last_ok else 0.0)
        for fs in snap.fronts:
            labels = {"service": fs.service, "port": fs.port}
            f.front_available.add_sample(f.front_available.name, labels, 1.0 if fs.available else 0.0)
            f.front_active.add_sample(f.front_active.name, labels, fs.active)
            for fam, value in (
                (f.front_total, fs.total),
                (f.front_in, fs.bytes_in),
                (f.front_out, fs.bytes_out),
                (f.front_retries, fs.retries),
                (f.front_refused, fs.refused),
                (f.front_no_backend, fs.no_backend),
            ):
                fam.add_sample(fam.name + "_total", labels, value)
            if fs.latency_counts:
                bounds = (*fs.latency_bounds, math.inf)
                _add_histogram(
                    f.front_latency, labels, HistogramView(bounds, list(fs.latency_counts), fs.latency_sum)
                )
        f.restarts_all.add_metric([], view.restarts)
        f.dropped.add_metric([], view.dropped_series)
        f.omitted.add_metric([], omitted)
        return iter(f.all())


_SVC = ("service",)
_REP = ("service", "replica")
_LVL = ("node", "pool", "resource")
_PROBE = ("service", "probe")
_FRONT = ("service", "port")


class _Families:
    """One scrape's metric families, empty until the collector fills them (in exposition order)."""

    def __init__(self) -> None:
        g, c, h = GaugeMetricFamily, CounterMetricFamily, HistogramMetricFamily
        self.up = g(
            P + "service_up", "1 for each service, labelled with its state.", labels=("service", "state")
        )
        self.ready = g(P + "service_replicas_ready", "Replicas of the service that are ready.", labels=_SVC)
        self.desired = g(P + "service_replicas_desired", "Replicas the service asks for.", labels=_SVC)
        self.restarts = c(P + "service_restarts", "Restarts of the service's replicas.", labels=_SVC)
        self.replica_restarts = c(P + "replica_restarts", "Restarts of the replica.", labels=_REP)
        self.cpu = g(
            P + "replica_cpu_percent", "CPU of the replica process, percent of one core.", labels=_REP
        )
        self.mem = g(P + "replica_memory_bytes", "Resident memory of the replica process.", labels=_REP)
        self.fds = g(P + "replica_open_files", "Open file descriptors of the replica process.", labels=_REP)
        self.capacity = g(P + "resource_capacity", "Effective capacity at a node or pool.", labels=_LVL)
        self.allocated = g(P + "resource_allocated", "Booked amount at a node or pool.", labels=_LVL)
        self.utilization = g(P + "resource_utilization", "allocated / capacity (0..1).", labels=_LVL)
        self.queue = g(P + "admission_queue_length", "Services waiting for admission.", labels=())
        self.lag = g(P + "event_loop_lag_seconds", "Most recent event-loop lag.", labels=())
        self.deployments = c(P + "deployments", "Deployments finished, by outcome.", labels=("outcome",))
        self.deploy_duration = h(
            P + "deploy_duration_seconds", "Duration of finished deployments.", labels=()
        )
        self.ready_latency = h(P + "ready_latency_seconds", "Replica start to ready.", labels=_SVC)
        self.probe_duration = h(P + "probe_duration_seconds", "Probe run latency.", labels=_PROBE)
        self.probe_failures = c(P + "probe_failures", "Failed probe runs.", labels=_PROBE)
        self.probe_success = g(P + "probe_success", "1 if the last probe run passed, else 0.", labels=_PROBE)
        self.restarts_all = c(P + "restarts", "Replica restarts, all services, since start.", labels=())
        self.dropped = c(P + "metrics_dropped_series", "Updates dropped by the label cap.", labels=())
        self.omitted = g(P + "metrics_omitted_services", "Services left out of the last scrape.", labels=())
        self.front_available = g(
            P + "front_available", "1 while a replica is ready behind it.", labels=_FRONT
        )
        self.front_active = g(P + "front_connections_active", "Connections open now.", labels=_FRONT)
        self.front_total = c(P + "front_connections", "Connections accepted.", labels=_FRONT)
        self.front_in = c(P + "front_bytes_in", "Bytes from clients to replicas.", labels=_FRONT)
        self.front_out = c(P + "front_bytes_out", "Bytes from replicas to clients.", labels=_FRONT)
        self.front_retries = c(P + "front_connect_retries", "Failed connects tried again.", labels=_FRONT)
        self.front_refused = c(P + "front_refused", "Connections closed unserved: queue.", labels=_FRONT)
        self.front_no_backend = c(
            P + "front_no_backend", "Connections closed: no ready replica in time.", labels=_FRONT
        )
        self.front_latency = h(
            P + "front_upstream_latency_seconds", "Connect to first byte from the replica.", labels=_FRONT
        )

    def all(self) -> list[Metric]:
        return list(vars(self).values())


def build_registry(
    source: MetricsSource,
    recorder: Recorder,
    sampler: ProcessSampler | None = None,
    *,
    max_services: int = DEFAULT_MAX_SERVICES,
) -> CollectorRegistry:
    """A private registry (not the global ``REGISTRY``) holding one :class:`MetricsCollector`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(source, recorder, sampler, max_services=max_services))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition (``CONTENT_TYPE``) of everything in ``registry``."""
    return generate_latest(registry)
