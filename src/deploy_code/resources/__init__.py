"""Resources: the capacity ledger that placement commits into.

Place in the flow: the ``runtime`` backend discovers capacity (psutil, NVML) and hands it here as a
:class:`deploy_code.units.Resources`; ``scheduling`` checks requests and commits placements all or
nothing; the ``supervisor`` releases a replica's share when it stops, renews TTL leases and runs the
reaper. :class:`Cluster` is the engine (cluster -> node -> pool -> lease, optimistic versioned
commits, integer quantities); :class:`Ledger` is the single-node facade the scheduler uses today.
Pure: no I/O, no asyncio; time is passed in as ``now`` or read from an injected clock.
"""

from deploy_code.resources.engine import (
    UNLIMITED,
    BatchItem,
    CapacityError,
    Cluster,
    Lease,
    NodeState,
    PoolTable,
    Shortfall,
)
from deploy_code.resources.ledger import LOCAL_NODE, Ledger, LedgerItem

__all__ = [
    "LOCAL_NODE",
    "UNLIMITED",
    "BatchItem",
    "CapacityError",
    "Cluster",
    "Lease",
    "Ledger",
    "LedgerItem",
    "NodeState",
    "PoolTable",
    "Shortfall",
]
