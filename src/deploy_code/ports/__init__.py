"""Port allocation: which replica holds which TCP port.

Place in the flow: ``scheduling`` asks for ports while it places replicas (fixed ports via
``reserve``, the rest via ``allocate``); the ``supervisor`` releases a replica's ports when it
stops. The OS bind probe is injected by ``runtime`` (``is_free``), and ``now`` is a parameter,
so this package does no I/O and reads no clock. Mutations are synchronous and owned by the
orchestrator's event loop (no locks).
"""

from deploy_code.ports.allocator import PortAllocator

__all__ = ["PortAllocator"]
