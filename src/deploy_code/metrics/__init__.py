"""Metrics: prometheus_client collectors that read live state at scrape time, bounded history rings.

Place in the flow: events (``deploy_code.events``) and the orchestrator's live state in; the
``/metrics`` text exposition and in-memory history for the dashboard and ``deploy-code top`` out.

- :mod:`.source`: ``Snapshot`` and its samples, and the ``MetricsSource`` protocol the orchestrator
  implements (``metrics_snapshot()``, called once per scrape).
- :mod:`.recorder`: ``Recorder``, an ``EventSink`` keeping running totals and histograms
  (deployments, ready latency, restarts, probes), bounded by ``max_services`` and ``retention_s``.
- :mod:`.process`: ``ProcessSampler``, CPU / memory / open files per pid with psutil, rate-bounded.
- :mod:`.collector`: ``MetricsCollector`` (a prometheus_client custom collector), ``build_registry``,
  ``render`` and ``CONTENT_TYPE``.
- :mod:`.history`: ``History``, per-key 1 s / 60 s ring buffers, and ``record_snapshot`` to feed it.

Never: imports ``supervisor``, ``api``, ``cli``, ``state``, ``runtime`` or ``health``; builds exposition
strings between scrapes; keeps a label set that can grow without bound; blocks ``publish``.
"""

from typing import TYPE_CHECKING, Any

from deploy_code.metrics.history import History, Point, record_snapshot
from deploy_code.metrics.process import ProcessSampler, ProcSample
from deploy_code.metrics.recorder import Recorder
from deploy_code.metrics.source import (
    FrontSample,
    LevelSample,
    MetricsSource,
    ReplicaSample,
    ServiceSample,
    Snapshot,
)

if TYPE_CHECKING:
    from deploy_code.metrics.collector import CONTENT_TYPE, MetricsCollector, build_registry, render

_LAZY = frozenset({"CONTENT_TYPE", "MetricsCollector", "build_registry", "render"})


def __getattr__(name: str) -> Any:
    # prometheus_client costs ~60 ms to import: `up` loads it on the first scrape, not at start-up.
    if name in _LAZY:
        from deploy_code.metrics import collector

        return getattr(collector, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CONTENT_TYPE",
    "FrontSample",
    "History",
    "LevelSample",
    "MetricsCollector",
    "MetricsSource",
    "Point",
    "ProcSample",
    "ProcessSampler",
    "Recorder",
    "ReplicaSample",
    "ServiceSample",
    "Snapshot",
    "build_registry",
    "record_snapshot",
    "render",
]
