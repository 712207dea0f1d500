"""Health: turns a ``ProbeSpec`` and a running replica into a stream of probe results and transitions.

Inputs are the probe specs from ``config`` and a :class:`CheckTarget` (host, ports, env, cwd of one
replica); outputs are :class:`ProbeResult` values and :class:`ProbeTransition` callbacks from a
:class:`ProbeRunner`, which the supervisor turns into replica states. Five checks: tcp, http (one pooled
client, :class:`HttpClientFactory`), exec (argv, never a shell), log_line (:class:`LogLineMatcher`, fed by
the supervisor) and notify (the systemd ``READY=1`` protocol, :class:`NotifyEndpoint`). The cadence is
adaptive (:func:`next_delay`): fast while a replica starts, ``period`` once it has passed.

This package must never import ``runtime``, ``supervisor`` or ``scheduling``, and must not import httpx at
import time (``up`` has to reach its first spawns fast): httpx is imported when the first http probe runs.
"""

from __future__ import annotations

from deploy_code.health.cadence import next_delay
from deploy_code.health.httpclient import HttpClientFactory
from deploy_code.health.listen import ListenWatcher
from deploy_code.health.loglines import LogLineMatcher
from deploy_code.health.notify import NotifyEndpoint
from deploy_code.health.probes import make_check
from deploy_code.health.result import Check, CheckTarget, ProbeResult
from deploy_code.health.runner import ProbeRunner, ProbeTransition

__all__ = [
    "Check",
    "CheckTarget",
    "HttpClientFactory",
    "ListenWatcher",
    "LogLineMatcher",
    "NotifyEndpoint",
    "ProbeResult",
    "ProbeRunner",
    "ProbeTransition",
    "make_check",
    "next_delay",
]
