"""Front ports: one stable TCP port per exposed service port, balanced over its ready replicas.

Place in the flow: the orchestrator (``supervisor``) builds one :class:`FrontPort` per exposed port,
starts it, and feeds it readiness: :meth:`FrontPort.add_backend` when a replica becomes ready,
:meth:`FrontPort.remove_backend` when it stops being ready, :meth:`FrontPort.drain` when it is stopped.
Metrics and the API read :meth:`FrontPort.stats`.

Inputs: addresses and settings. Outputs: proxied connections and counters. Never imports a layer
above ``config``; it knows nothing of services, replicas or health, only backend ids.

Modules: :mod:`.balancer` (pure pool and policy), :mod:`.bucket` (token bucket), :mod:`.stats`
(bounded counters), :mod:`.splice` (one connection's protocol pair), :mod:`.proxy` (the port),
:mod:`.holder` (who holds a taken port, for S004).
"""

from deploy_code.network.balancer import Backend, BackendState, Balance, Balancer
from deploy_code.network.bucket import TokenBucket
from deploy_code.network.proxy import DEFAULT_MAX_QUEUE, FrontPort, ProxySettings
from deploy_code.network.stats import LATENCY_BOUNDS, Histogram, PortStats

__all__ = [
    "DEFAULT_MAX_QUEUE",
    "LATENCY_BOUNDS",
    "Backend",
    "BackendState",
    "Balance",
    "Balancer",
    "FrontPort",
    "Histogram",
    "PortStats",
    "ProxySettings",
    "TokenBucket",
]
