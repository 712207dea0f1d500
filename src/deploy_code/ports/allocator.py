"""Port allocator: O(1) allocate/release over a range whatever its occupancy, with quarantine."""

from __future__ import annotations

import math
from collections import deque
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
      probe-rejected ports moved to the back. A ``deque``: popping the front and appending are
      O(1). Every free port has an entry; the deque may also hold ``_stale`` entries (counted
      exactly), left when :meth:`reserve` takes a free port by name, since removing it from the
      middle would be a scan. With none, :meth:`allocate` takes the front without a check;
      otherwise it drops stale entries as it meets them (each once: amortized O(1)), and the
      deque is compacted when it grows past twice the range. A port reserved while free and
      freed again later may therefore come out at its older place in the order.
    * ``_quarantine``: released range ports -> the time they become reusable. ``_fifo`` holds
      ``(ready_at, port)`` in release order (``now`` is monotonic, so its front is always the
      first to mature); an entry whose time no longer matches ``_quarantine`` is stale (the port
      was reserved out of quarantine) and is dropped when it reaches the front, or when the
      deque is compacted past twice the range. ``_next_ready`` is a lower bound on the front's
      time (``inf`` when empty), so the hot paths compare one float and do nothing else.
    * ``_holder``: port -> owner, for range and fixed ports alike.
    * ``_by_owner``: owner -> its port (an ``int``, the common case: no set to build) or its
      ports (a ``set`` once it holds two or more).

    A range port is exactly one of free, quarantined (a key of ``_quarantine``) and held (a key
    of ``_holder``).

    Cost: :meth:`allocate` and :meth:`release` do a constant number of dict and deque operations
    whatever the occupancy of the range (there is no scan); maturing quarantined ports and
    dropping stale entries are amortized O(1). ``bench/pure_core.py`` measures it at 50, 90 and
    99 % occupancy against a linear scan.

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
        # Every free range port, plus ``_stale`` entries: bounded by twice the range size + 1.
        self._free: deque[int] = deque(range(low, high + 1))
        self._stale = 0
        # Bounded by the range size: each range port appears at most once.
        self._quarantine: dict[int, float] = {}
        # Release order; bounded by twice the range size + 1 (compacted in ``reserve``).
        self._fifo: deque[tuple[float, int]] = deque()
        # Lower bound on the ready time of the quarantine's front; inf when it is empty.
        self._next_ready = math.inf
        # Bounded by 65,535 (one entry per held port number).
        self._holder: dict[int, str] = {}
        # Bounded by the number of held ports (an owner with no ports is removed).
        self._by_owner: dict[str, int | set[int]] = {}
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
        return len(self._free) - self._stale

    @property
    def quarantined(self) -> int:
        """Range ports released and waiting out their quarantine."""
        return len(self._quarantine)

    def _in_range(self, port: int) -> bool:
        return self.low <= port <= self.high

    def _mature(self, now: float) -> None:
        # Amortized O(1): each release puts a port in quarantine once and it leaves once.
        # Callers check ``self._next_ready <= now`` first, so most calls never get here.
        fifo = self._fifo
        quarantine = self._quarantine
        free = self._free
        while fifo:
            ready_at, port = fifo[0]
            if ready_at > now:
                self._next_ready = ready_at
                return
            fifo.popleft()
            if quarantine.get(port) == ready_at:  # otherwise stale: reserved since, maybe released again
                del quarantine[port]
                free.append(port)
        self._next_ready = math.inf

    def _hold(self, port: int, owner: str) -> None:
        self._holder[port] = owner
        prev = self._by_owner.setdefault(owner, port)
        if prev is port:  # the owner's first port
            return
        if isinstance(prev, int):
            self._by_owner[owner] = {prev, port}
        else:
            prev.add(port)

    def _is_stale(self, port: int) -> bool:
        # Whether an entry of ``_free`` names a port that is no longer free (taken by ``reserve``).
        return port in self._holder or port in self._quarantine

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
        if self._next_ready <= now:
            self._mature(now)
        free = self._free
        if free and self._is_free is None and not self._stale:
            # Fast path: no bind probe and no stale entry, so the front port is free.
            port = free.popleft()
            self._holder[port] = owner
            prev = self._by_owner.setdefault(owner, port)
            if prev is not port:  # the owner already holds ports
                if isinstance(prev, int):
                    self._by_owner[owner] = {prev, port}
                else:
                    prev.add(port)
            return port
        return self._allocate_slow(owner)

    def _allocate_slow(self, owner: str) -> int:
        """Allocate past stale entries and/or through the bind probe."""
        free = self._free
        probe = self._is_free
        tries = min(self.max_probe, len(free) - self._stale)  # each port tried at most once per call
        tried: set[int] = set()
        rejected = 0
        # Terminates: a free port not yet tried always has an entry ahead of the re-appended ones.
        while len(tried) < tries:
            port = free.popleft()
            if port in tried or self._is_stale(port):
                # Stale, or a second entry of a port tried in this call (whose entry is at the back):
                # either way an extra entry, now dropped.
                self._stale -= 1
                continue
            tried.add(port)
            if probe is None or probe(port):
                self._hold(port, owner)
                return port
            free.append(port)  # back of the line: it may be free again later
            rejected += 1
            self._probe_rejections += 1
        self._exhausted += 1
        raise PlacementError(
            f"port range exhausted: {self.low}-{self.high} ({self.size} ports) could not give {owner!r} a "
            f"port: {self._range_in_use()} in use, {len(self._quarantine)} in quarantine, "
            f"{self.free_count} free, {rejected} of {tries} tried rejected by the bind probe",
            code=ErrorCode.E004,
            hint="widen the port range, lower the replica count, or wait for quarantined ports "
            f"(quarantine {self.quarantine_s:g}s)",
        )

    def _range_in_use(self) -> int:
        return self.size - self.free_count - len(self._quarantine)

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
        self._hold(port, owner)
        if not self._in_range(port):
            return
        if self._quarantine.pop(port, None) is not None:
            # Out of quarantine: its ``_fifo`` entry goes stale (dropped at the front, or compacted).
            if len(self._fifo) > 2 * self.size:
                self._compact_fifo()
        else:
            # It was free: its entry in ``_free`` goes stale (dropped when met, or compacted).
            self._stale += 1
            if len(self._free) > 2 * self.size:
                self._compact_free()

    def _compact_free(self) -> None:
        # O(range), at most once per ``size`` reserves: keep the first entry of each free port.
        seen: set[int] = set()
        kept: deque[int] = deque()
        for port in self._free:
            if port not in seen and not self._is_stale(port):
                seen.add(port)
                kept.append(port)
        self._free = kept
        self._stale = 0

    def _compact_fifo(self) -> None:
        # O(range), at most once per ``size`` reserves: keep the entries that still match.
        quarantine = self._quarantine
        kept: deque[tuple[float, int]] = deque()
        seen: set[int] = set()  # a port re-released at the same instant matches twice: keep the first
        for ready_at, port in self._fifo:
            if port not in seen and quarantine.get(port) == ready_at:
                seen.add(port)
                kept.append((ready_at, port))
        self._fifo = kept

    def release(self, port: int, now: float) -> None:
        """Give a port back; range ports go into quarantine. Releasing a free port does nothing.

        Args:
            port: the port to release.
            now: the current monotonic time (``clock.now()``).
        """
        owner = self._holder.pop(port, None)
        if owner is None:
            return
        ports = self._by_owner.pop(owner)
        if isinstance(ports, set):  # the owner keeps its other ports
            ports.discard(port)
            self._by_owner[owner] = ports if len(ports) > 1 else next(iter(ports))
        if self._next_ready <= now:
            self._mature(now)
        if self.low <= port <= self.high:
            ready_at = now + self.quarantine_s
            quarantine = self._quarantine
            if ready_at <= now and not quarantine:  # zero quarantine: straight to the back of the free order
                self._free.append(port)
            else:
                if ready_at < self._next_ready:  # the quarantine was empty
                    self._next_ready = ready_at
                quarantine[port] = ready_at
                self._fifo.append((ready_at, port))

    def release_owner(self, owner: str, now: float) -> list[int]:
        """Release every port ``owner`` holds (e.g. when replica ``"api.1"`` stops).

        Args:
            owner: the holder.
            now: the current monotonic time.

        Returns:
            The released ports, ascending (empty when the owner held none).
        """
        ports = self.ports_of(owner)
        for port in ports:
            self.release(port, now)
        return ports

    def owner_of(self, port: int) -> str | None:
        """Who holds ``port``, or ``None`` when nobody does."""
        return self._holder.get(port)

    def ports_of(self, owner: str) -> list[int]:
        """Ports ``owner`` holds, ascending."""
        ports = self._by_owner.get(owner)
        if ports is None:
            return []
        return [ports] if isinstance(ports, int) else sorted(ports)

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
            "free": self.free_count,
            "quarantined": len(self._quarantine),
            "probe_rejections": self._probe_rejections,
            "exhausted": self._exhausted,
            "owners": {owner: self.ports_of(owner) for owner in sorted(self._by_owner)},
        }
