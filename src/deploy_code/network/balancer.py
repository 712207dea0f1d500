"""Which backend gets the next connection: round robin or least connections over the ready set.

Pure and synchronous (no sockets, no clock): the proxy calls :meth:`Balancer.pick` for each new
connection and :meth:`Balancer.acquire` / :meth:`Balancer.release` around its life.

Only *ready* backends are in the pool. :meth:`Balancer.remove` takes a backend out at once (it stopped
being ready, or it is draining); its open connections still hold their :class:`Backend` object and
release it when they end, so counts stay right for a backend that is gone. Adding an id again gives a
new :class:`Backend`, so connections of an old, draining incarnation never mix with the new one.

Costs, with ``n`` ready backends:

* round robin: ``pick`` O(1) (a ring and a cursor);
* least connections: ``pick``, ``acquire`` and ``release`` O(1), with backends kept in buckets by
  active count and the lowest non-empty count tracked (the LFU-cache layout): a count only ever moves
  by one, so the minimum moves by at most one and never needs a scan;
* ``add`` / ``remove``: O(n) for the ring (membership changes are rare next to connections);
* ``pick`` with ``exclude`` (the retry path after a failed connect), or while some backend is
  *suspect*: O(n) at worst.

A backend whose connect just failed is *suspect* until ``suspect_until``: picks pass it over while
another backend is ready, so a replica that died before the owner removed it costs one failed connect,
not one per connection. When every ready backend is suspect, they are tried anyway.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field

__all__ = ["Backend", "BackendState", "Balance", "Balancer"]


class Balance(enum.StrEnum):
    """Balancing policy of one front port."""

    ROUND_ROBIN = "round_robin"
    LEAST_CONN = "least_conn"


class BackendState(enum.StrEnum):
    """Where a backend stands: in the pool, or out of it with connections that may still run."""

    READY = "ready"
    DRAINING = "draining"
    REMOVED = "removed"


@dataclass(eq=False, slots=True)
class Backend:
    """One replica's address and its live counters. Identity, not value, tells two incarnations apart."""

    id: str
    host: str
    port: int
    state: BackendState = BackendState.READY
    active: int = 0
    total: int = 0
    connect_failures: int = 0
    suspect_until: float = 0.0  # monotonic; picks pass it over before then (see the module docstring)
    # Set while the backend is in the least-connections buckets.
    _bucket: int | None = field(default=None, repr=False)


class Balancer:
    """The ready pool of one front port and the policy that picks from it.

    Args:
        policy: :class:`Balance` or its string value.
    """

    def __init__(self, policy: Balance | str = Balance.ROUND_ROBIN) -> None:
        self.policy = Balance(policy)
        # Bounded by the number of replicas of the service: one entry per id.
        self._by_id: dict[str, Backend] = {}
        # Round robin: the ready backends in join order, and where the next pick starts.
        self._ring: list[Backend] = []
        self._cursor = 0
        # Least connections: active count -> ready backends with that count (a dict as an ordered set,
        # so ties go to the one that has waited longest at that count); bounded by n backends in all.
        self._buckets: dict[int, dict[Backend, None]] = {}
        self._min = 0
        self._suspects = 0  # ready backends marked suspect (possibly expired): the fast paths check it

    # -- membership -----------------------------------------------------------------------------------

    def add(self, backend_id: str, host: str, port: int) -> Backend:
        """Put a backend in the pool (it became ready). An id already present is replaced.

        Returns:
            the new :class:`Backend`.
        """
        self.remove(backend_id)
        backend = Backend(backend_id, host, port)
        self._by_id[backend_id] = backend
        self._ring.append(backend)
        self._bucket_put(backend)
        return backend

    def remove(self, backend_id: str, state: BackendState = BackendState.REMOVED) -> Backend | None:
        """Take a backend out of the pool at once: no new connection picks it.

        Args:
            backend_id: the id given to :meth:`add`.
            state: what to mark it: ``REMOVED`` (gone) or ``DRAINING`` (stopping).

        Returns:
            the backend taken out, or None when the id is not in the pool.
        """
        backend = self._by_id.pop(backend_id, None)
        if backend is None:
            return None
        backend.state = state
        if backend.suspect_until:
            self._suspects -= 1
        idx = self._ring.index(backend)
        del self._ring[idx]
        if idx < self._cursor:
            self._cursor -= 1
        self._bucket_take(backend)
        return backend

    def get(self, backend_id: str) -> Backend | None:
        """The ready backend with this id, or None."""
        return self._by_id.get(backend_id)

    def __len__(self) -> int:
        return len(self._ring)

    def __iter__(self) -> Iterator[Backend]:
        return iter(list(self._ring))

    # -- picking --------------------------------------------------------------------------------------

    def pick(self, exclude: Collection[Backend] = (), now: float = 0.0) -> Backend | None:
        """The backend for the next connection, or None when no ready backend is left to try.

        Args:
            exclude: backends this connection already failed to reach; the caller decides when to
                start over with an empty set.
            now: monotonic time, to tell whether a suspect backend is still suspect.
        """
        if not self._ring:
            return None
        if self._suspects:
            self._expire_suspects(now)
        choose = self._pick_ring if self.policy is Balance.ROUND_ROBIN else self._pick_least
        found = choose(exclude, now)
        if found is None and self._suspects:
            found = choose(exclude, math.inf)  # every backend left is suspect: better one than none
        return found

    def suspect(self, backend: Backend, until: float) -> None:
        """Pass ``backend`` over in picks until ``until`` (a connect to it just failed)."""
        if backend.state is BackendState.READY and not backend.suspect_until:
            self._suspects += 1
        backend.suspect_until = until

    def clear_suspect(self, backend: Backend) -> None:
        """``backend`` answered: it is not suspect any more."""
        if backend.suspect_until:
            backend.suspect_until = 0.0
            if backend.state is BackendState.READY:
                self._suspects -= 1

    def _expire_suspects(self, now: float) -> None:
        for backend in self._ring:
            if backend.suspect_until and backend.suspect_until <= now:
                backend.suspect_until = 0.0
                self._suspects -= 1

    def _pick_ring(self, exclude: Collection[Backend], now: float) -> Backend | None:
        n = len(self._ring)
        for _ in range(n):
            if self._cursor >= n:
                self._cursor = 0
            backend = self._ring[self._cursor]
            self._cursor += 1
            if backend not in exclude and backend.suspect_until <= now:
                return backend
        return None

    def _pick_least(self, exclude: Collection[Backend], now: float) -> Backend | None:
        bucket = self._buckets.get(self._min)
        if bucket is not None and not exclude and not self._suspects:
            return next(iter(bucket))
        best: Backend | None = None
        for backend in self._ring:
            if backend in exclude or backend.suspect_until > now:
                continue
            if best is None or backend.active < best.active:
                best = backend
        return best

    # -- connection accounting ------------------------------------------------------------------------

    def acquire(self, backend: Backend) -> None:
        """Count a connection that was opened to ``backend``."""
        self._bucket_take(backend)
        backend.active += 1
        backend.total += 1
        if backend.state is BackendState.READY:
            self._bucket_put(backend)

    def release(self, backend: Backend) -> None:
        """Count a connection to ``backend`` that ended (it may have left the pool meanwhile)."""
        if backend.active <= 0:
            raise ValueError(f"release without acquire on backend {backend.id!r}")
        self._bucket_take(backend)
        backend.active -= 1
        if backend.state is BackendState.READY:
            self._bucket_put(backend)

    # -- least-connections buckets --------------------------------------------------------------------

    def _bucket_put(self, backend: Backend) -> None:
        count = backend.active
        self._buckets.setdefault(count, {})[backend] = None
        backend._bucket = count
        if count < self._min or self._min not in self._buckets:
            self._min = count

    def _bucket_take(self, backend: Backend) -> None:
        count = backend._bucket
        if count is None:
            return
        backend._bucket = None
        bucket = self._buckets[count]
        del bucket[backend]
        if bucket:
            return
        del self._buckets[count]
        if count != self._min:
            return
        if not self._buckets:
            self._min = 0
        elif count + 1 in self._buckets:
            # The usual case: the one backend at the minimum just took a connection.
            self._min = count + 1
        else:
            # A backend left the pool from the minimum bucket: a rare membership change, O(n).
            self._min = min(self._buckets)
