"""Port allocator: O(1) amortized allocate/release over a range, with quarantine after release."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from deploy_code.errors import ErrorCode, PlacementError, SupervisionError

__all__ = ["PortAllocator"]

_MIN_PORT = 1
_MAX_PORT = 65535


class PortAllocator:
    """Hands out ports from ``low..high`` (inclusive) and tracks fixed ports anywhere.

    Structures (all bounded: the range ones by ``high - low + 1``, the rest by the number of
    valid port numbers, 65,535):

    * ``_free``: range ports ready to hand out, in the order they will be tried: never-used ports
      first (ascending), then ports back from quarantine (least recently released first), with
      probe-rejected ports moved to the back. An ``OrderedDict`` used as an ordered set, so
      popping the front, appending and removing an arbitrary port are all O(1).
    * ``_quarantine``: released range ports with the time they become reusable, in release
      order (FIFO; ``now`` is monotonic, so the front is always the first to mature).
    * ``_holder`` / ``_by_owner``: who holds what, for range and fixed ports alike.

    A range port is in exactly one of ``_free``, ``_quarantine`` and ``_holder``.

    Args:
        low: first port of the range.
        high: last port of the range (inclusive).
        quarantine_s: seconds a released port waits before it is handed out again (so a new
            process does not bind a port still in TIME_WAIT or still known to old clients).
        is_free: an optional bind probe ``port -> bool`` supplied by the caller (the I/O lives in
            the runtime); ports it rejects are skipped and moved to the back of the free order.
        max_probe: at most this many ports are tried per :meth:`allocate`.

    Raises:
        ValueError: the range is not within 1..65535, ``low > high``, ``quarantine_s < 0`` or
            ``max_probe < 1``.
    """

    def __init__(
        self,
        low: int,
        high: int,
        *,
        quarantine_s: float = 2.0,
        is_free: Callable[[int], bool] | None = None,
        max_probe: int = 64,
    ) -> None:
        if not (_MIN_PORT <= low <= high <= _MAX_PORT):
            raise ValueError(f"port range {low}-{high} must satisfy 1 <= low <= high <= 65535")
        if quarantine_s < 0:
            raise ValueError(f"quarantine_s must not be negative: {quarantine_s!r}")
        if max_probe < 1:
            raise ValueError(f"max_probe must be at least 1: {max_probe!r}")
        self.low = low
        self.high = high
        self.quarantine_s = float(quarantine_s)
        self.max_probe = max_probe
        self._is_free = is_free
        # Bounded by the range size: each range port appears at most once.
        self._free: OrderedDict[int, None] = OrderedDict.fromkeys(range(low, high + 1))
        # Bounded by the range size: each range port appears at most once.
        self._quarantine: OrderedDict[int, float] = OrderedDict()
        # Bounded by 65,535 (one entry per held port number).
        self._holder: dict[int, str] = {}
        # Bounded by the number of held ports (an owner with no ports is removed).
        self._by_owner: dict[str, set[int]] = {}
        self._probe_rejections = 0
        self._exhausted = 0

    @property
    def size(self) -> int:
        """Number of ports in the range."""
        return self.high - self.low + 1

    @property
    def in_use(self) -> int:
        """Ports held right now (range and fixed ports)."""
        return len(self._holder)

    @property
    def free_count(self) -> int:
        """Range ports ready to hand out (quarantined ports not included).

        A quarantined port moves to the free set on the next :meth:`allocate` or :meth:`release`
        at or after its maturity, so this may undercount until then.
        """
        return len(self._free)

    @property
    def quarantined(self) -> int:
        """Range ports released and waiting out their quarantine."""
        return len(self._quarantine)

    def _in_range(self, port: int) -> bool:
        return self.low <= port <= self.high

    def _mature(self, now: float) -> None:
        # Amortized O(1): each release puts a port in quarantine once and it leaves once.
        quarantine = self._quarantine
        while quarantine:
            port, ready_at = next(iter(quarantine.items()))
            if ready_at > now:
                break
            del quarantine[port]
            self._free[port] = None

    def _hold(self, port: int, owner: str) -> None:
        self._holder[port] = owner
        self._by_owner.setdefault(owner, set()).add(port)

    def allocate(self, owner: str, now: float) -> int:
        """Hand ``owner`` a port from the range.

        Args:
            owner: who holds it, e.g. the replica id ``"api.1"``.
            now: the current monotonic time (``clock.now()``).

        Returns:
            The port, now held by ``owner``.

        Raises:
            PlacementError: no port could be handed out (E004): the range is used up or in
                quarantine, or the probe rejected every port tried (``max_probe`` at most).
        """
        self._mature(now)
        free = self._free
        tries = min(self.max_probe, len(free))  # each port tried at most once per call
        rejected = 0
        probe = self._is_free
        for _ in range(tries):
            port, _none = free.popitem(last=False)
            if probe is None or probe(port):
                self._hold(port, owner)
                return port
            free[port] = None  # back of the line: it may be free again later
            rejected += 1
            self._probe_rejections += 1
        self._exhausted += 1
        raise PlacementError(
            f"port range exhausted: {self.low}-{self.high} ({self.size} ports) could not give {owner!r} a "
            f"port: {self._range_in_use()} in use, {len(self._quarantine)} in quarantine, "
            f"{len(free)} free, {rejected} of {tries} tried rejected by the bind probe",
            code=ErrorCode.E004,
            hint="widen the port range, lower the replica count, or wait for quarantined ports "
            f"(quarantine {self.quarantine_s:g}s)",
        )

    def _range_in_use(self) -> int:
        return self.size - len(self._free) - len(self._quarantine)

    def reserve(self, port: int, owner: str) -> None:
        """Hold a fixed port for ``owner``; ports outside the range are allowed.

        A fixed port in the range is taken out of the free set or out of quarantine (it was
        asked for by name, so the caller's bind decides). Reserving a port the same owner
        already holds does nothing.

        Args:
            port: the port number, 1..65535.
            owner: who holds it, e.g. ``"api.1"``.

        Raises:
            SupervisionError: the port is held by someone else (S004); the message names both.
            ValueError: the port is not within 1..65535.
        """
        if not (_MIN_PORT <= port <= _MAX_PORT):
            raise ValueError(f"port {port!r} is not within 1..65535")
        holder = self._holder.get(port)
        if holder is not None:
            if holder == owner:
                return
            raise SupervisionError(
                f"port conflict: port {port} requested by {owner!r} is already held by {holder!r}",
                code=ErrorCode.S004,
                hint=f"give {owner!r} or {holder!r} another port, or let deploy-code pick one",
            )
        if self._in_range(port):
            self._free.pop(port, None)
            self._quarantine.pop(port, None)
        self._hold(port, owner)

    def release(self, port: int, now: float) -> None:
        """Give a port back; range ports go into quarantine. Releasing a free port does nothing.

        Args:
            port: the port to release.
            now: the current monotonic time (``clock.now()``).
        """
        owner = self._holder.pop(port, None)
        if owner is None:
            return
        ports = self._by_owner[owner]
        ports.discard(port)
        if not ports:
            del self._by_owner[owner]
        if self._in_range(port):
            self._quarantine[port] = now + self.quarantine_s
        self._mature(now)

    def release_owner(self, owner: str, now: float) -> list[int]:
        """Release every port ``owner`` holds (e.g. when replica ``"api.1"`` stops).

        Args:
            owner: the holder.
            now: the current monotonic time.

        Returns:
            The released ports, ascending (empty when the owner held none).
        """
        ports = sorted(self._by_owner.get(owner, ()))
        for port in ports:
            self.release(port, now)
        return ports

    def owner_of(self, port: int) -> str | None:
        """Who holds ``port``, or ``None`` when nobody does."""
        return self._holder.get(port)

    def ports_of(self, owner: str) -> list[int]:
        """Ports ``owner`` holds, ascending."""
        return sorted(self._by_owner.get(owner, ()))

    def snapshot(self) -> dict[str, object]:
        """Plain-data state for ``status`` and the API.

        Returns:
            ``range``, ``size``, ``in_use`` (all held ports), ``in_use_range``, ``in_use_fixed``
            (held ports outside the range), ``free``, ``quarantined``, ``probe_rejections`` and
            ``exhausted`` (running totals) and ``owners`` (owner -> ascending ports).
        """
        in_range = self._range_in_use()
        return {
            "range": [self.low, self.high],
            "size": self.size,
            "quarantine_s": self.quarantine_s,
            "in_use": len(self._holder),
            "in_use_range": in_range,
            "in_use_fixed": len(self._holder) - in_range,
            "free": len(self._free),
            "quarantined": len(self._quarantine),
            "probe_rejections": self._probe_rejections,
            "exhausted": self._exhausted,
            "owners": {owner: sorted(ports) for owner, ports in sorted(self._by_owner.items())},
        }
