"""Resources: the capacity ledger that placement commits into.

Place in the flow: the ``runtime`` backend discovers capacity (psutil, NVML) and hands it
here as a :class:`deploy_code.units.Resources`; ``scheduling`` checks requests against the
:class:`Ledger` and commits placements all-or-nothing; the ``supervisor`` releases a replica's
share when it stops. One node, with optional nested pools (quotas) and leases with a TTL; state is
an immutable versioned snapshot committed by compare-and-set, so the ledger is thread-safe. Pure:
no I/O, no clock (``now`` is passed in), no asyncio.
"""

from deploy_code.resources.ledger import Ledger

__all__ = ["Ledger"]
