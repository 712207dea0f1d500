"""Resources: the capacity ledger that placement commits into.

Place in the flow: the ``runtime`` backend discovers capacity (psutil, NVML) and hands it
here as a :class:`deploy_code.units.Resources`; ``scheduling`` checks requests against the
:class:`Ledger` and commits placements all-or-nothing; the ``supervisor`` releases a replica's
share when it stops. Single node for now; pools, nodes and leases with TTL come later on top of
the same ``version`` counter. Pure: no I/O, no clock, no asyncio.
"""

from deploy_code.resources.ledger import Ledger

__all__ = ["Ledger"]
