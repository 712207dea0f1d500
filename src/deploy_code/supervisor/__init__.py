"""Supervisor: placements become replicas driven to READY, restarted by policy, stopped in order.

Owns all live state on one asyncio loop. Inputs: a loaded ``Project``, a runtime backend, a state store.
Outputs: events to sinks (state, metrics, API) and the control surface the API calls.
"""

from deploy_code.supervisor.admission import Admission, derive_limit, start_weight
from deploy_code.supervisor.alerts import (
    ALERT_INTERVAL_S,
    AlertEngine,
    AlertEvent,
    ServiceHealth,
    WebhookSender,
    evaluate_every,
)
from deploy_code.supervisor.backoff import CrashLoopDetector, next_delay
from deploy_code.supervisor.orchestrator import DeployOutcome, Orchestrator
from deploy_code.supervisor.registry import Registry, ReplicaEntry
from deploy_code.supervisor.states import TRANSITIONS, check_transition

__all__ = [
    "ALERT_INTERVAL_S",
    "TRANSITIONS",
    "Admission",
    "AlertEngine",
    "AlertEvent",
    "CrashLoopDetector",
    "DeployOutcome",
    "Orchestrator",
    "Registry",
    "ReplicaEntry",
    "ServiceHealth",
    "WebhookSender",
    "check_transition",
    "derive_limit",
    "evaluate_every",
    "next_delay",
    "start_weight",
]
