"""The Python API: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio) drive a deployment
the way the CLI does, with typed results and coded errors.

Place in the flow: the top layer, beside ``cli`` (neither imports the other). It talks to a running
orchestrator over its API (the state directory's 0600 unix socket, or the TCP listener with a bearer
token) and starts one the way a person would (``deploy-code up --detach``). It must never import the
orchestrator's own machinery (``supervisor``, ``runtime``): everything goes through the API.

``import deploy_code`` does not import this package (nor httpx or pydantic): ``deploy_code.Client``
loads it on first use, so the CLI's start-up time does not pay for it.

Errors are :class:`~deploy_code.errors.DeployCodeError` subclasses chosen by code: S001 unknown
service and S002 no orchestrator are :class:`~deploy_code.errors.SupervisionError`, E008 a timeout is
:class:`~deploy_code.errors.TimeoutExceeded`, E006 a service that did not get ready
:class:`~deploy_code.errors.HealthError`, E010 a transport failure or unexpected reply
:class:`~deploy_code.errors.NetworkError`.
"""

from deploy_code.client._async import AsyncClient
from deploy_code.client._sync import Client
from deploy_code.client.models import (
    ApiInfo,
    Event,
    Failure,
    HealthReport,
    LogLine,
    NotReady,
    Outcome,
    PortUsage,
    ReplicaStatus,
    ResourceUsage,
    RestartResult,
    ScaleResult,
    ServiceHealth,
    ServiceStatus,
    Status,
    StopResult,
)

__all__ = [
    "ApiInfo",
    "AsyncClient",
    "Client",
    "Event",
    "Failure",
    "HealthReport",
    "LogLine",
    "NotReady",
    "Outcome",
    "PortUsage",
    "ReplicaStatus",
    "ResourceUsage",
    "RestartResult",
    "ScaleResult",
    "ServiceHealth",
    "ServiceStatus",
    "Status",
    "StopResult",
]
