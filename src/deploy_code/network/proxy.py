"""FrontPort: one stable TCP port that balances connections over a service's ready replicas.

L4 only: bytes are copied both ways (:mod:`.splice`), so any protocol works. Life of a connection:

1. **Admission.** Under ``max_connections`` it goes on at once; otherwise it waits in a FIFO queue
   (at most ``max_queue`` long) for up to ``queue_timeout``, and is then closed unserved (``refused``).
2. **Backend.** The :class:`~deploy_code.network.balancer.Balancer` picks a ready backend; a failed
   connect is retried on another one (``connect_retries``), all within ``connect_timeout`` from the
   start of this step. With no ready backend it waits for one to join, up to the same deadline, and
   is then closed (``no_backend``). While no backend is ready the port reports ``available: False``.
3. **Splice** until both sides have closed, shaped by the port's bandwidth limit when one is set.
4. **Replay.** When the backend ends (EOF, reset) before sending a byte back, the client is kept: the
   failed backend is marked suspect, another one is connected as in step 2 (a fresh ``connect_timeout``
   from the failure), and the bytes the client had sent (at most ``replay_buffer``, with its EOF) are
   sent again (``replays``). At most ``max_replays`` times per connection; off with ``replay=False``.

Membership is driven by the owner (the orchestrator), from readiness events: :meth:`FrontPort.add_backend`
when a replica becomes ready, :meth:`FrontPort.remove_backend` the moment it stops being ready, and
:meth:`FrontPort.drain` when it is being stopped. A replica that dies before its removal reaches us
only costs a refused connect, which is retried on another backend.

Tasks: one handler per connection, all in one ``asyncio.TaskGroup`` owned by the port and cancelled by
:meth:`FrontPort.close`. Mutations of the pool and the counters are synchronous, on the loop.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import math
from collections.abc import Awaitable
from dataclasses import dataclass

from deploy_code.clock import Clock, SystemClock
from deploy_code.errors import ErrorCode, NetworkError, SupervisionError
from deploy_code.network.balancer import Backend, BackendState, Balance, Balancer
from deploy_code.network.bucket import TokenBucket
from deploy_code.network.holder import describe_holder
from deploy_code.network.splice import Splice
from deploy_code.network.stats import PortStats

__all__ = ["DEFAULT_MAX_QUEUE", "FrontPort", "ProxySettings"]

# Waiting connections hold an accepted socket each; past this many the next one is refused at once.
DEFAULT_MAX_QUEUE = 1024
# Kernel accept backlog: bursts of new connections queue here before the loop accepts them.
BACKLOG = 1024
# After every ready backend refused, wait this long (or until the pool changes) before trying again:
# a replica may be restarting, and the connect deadline still bounds the whole wait.
_RETRY_PAUSE = 0.01
# A backend whose connect failed is passed over this long (while others are ready): a replica that
# died is usually removed by its exit event well before, and one that is back answers the next try.
SUSPECT_S = 1.0
# Replay on empty upstream: bytes kept per connection until the backend's first byte, and replays.
DEFAULT_REPLAY_BUFFER = 64 * 1024
DEFAULT_MAX_REPLAYS = 3


class _Closing(Exception):
    """Raised inside the port's task group by close() to cancel every connection handler."""


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """How one front port balances, limits and times out. All durations are seconds.

    Attributes:
        balance: ``round_robin`` or ``least_conn``.
        connect_timeout: the whole budget to reach a backend: waiting for one to be ready plus every
            connect attempt and retry.
        bandwidth: bytes per second in *each* direction, shared by all connections of the port; None
            for no limit.
        burst: token bucket size in bytes (None: 50 ms of ``bandwidth``, at least 16 KiB).
        max_connections: concurrent connections served; None for no cap (file descriptors bound it).
        queue_timeout: how long a connection over ``max_connections`` waits for a slot.
        max_queue: how many connections may wait at once (for a slot or for a ready backend).
        replay: when a backend ends a connection before sending any byte back, send what the client
            sent to another backend instead of closing the client. Safe for protocols where a
            request without an answer may be sent again (HTTP/1 idempotent requests, most RPC); it
            can run twice a non-idempotent request that the dead backend processed without answering.
        replay_buffer: most bytes kept per connection for a replay; a connection that sends more
            before the first byte back is not replayed.
        max_replays: most replays of one connection.
    """

    balance: Balance | str = Balance.ROUND_ROBIN
    connect_timeout: float = 0.5
    bandwidth: float | None = None
    burst: float | None = None
    max_connections: int | None = None
    queue_timeout: float = 1.0
    max_queue: int = DEFAULT_MAX_QUEUE
    replay: bool = True
    replay_buffer: int = DEFAULT_REPLAY_BUFFER
    max_replays: int = DEFAULT_MAX_REPLAYS

    def __post_init__(self) -> None:
        Balance(self.balance)  # raises ValueError for an unknown policy
        if self.connect_timeout <= 0 or self.queue_timeout < 0:
            raise ValueError("connect_timeout must be > 0 and queue_timeout >= 0")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError("bandwidth must be > 0 bytes/s")
        if self.max_connections is not None and self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if self.max_queue < 0:
            raise ValueError("max_queue must be >= 0")
        if self.replay_buffer < 0 or self.max_replays < 0:
            raise ValueError("replay_buffer and max_replays must be >= 0")


class FrontPort:
    """A listening port on ``host`` that proxies each connection to one ready backend.

    Args:
        name: the service (or ``service.port``) name, for messages and stats.
        host: address to listen on, usually ``127.0.0.1``.
        port: fixed port, or 0 for one the OS picks (read :attr:`port` after :meth:`start`).
        settings: balancing, limits and timeouts.
        clock: time source for deadlines, shaping and latency.

    Usage::

        fp = FrontPort("web", "127.0.0.1", 0, ProxySettings(balance="least_conn"))
        await fp.start()                      # S004 if the port is taken
        fp.add_backend("web.0", "127.0.0.1", 41001)
        ...
        await fp.drain("web.0", timeout=10)  # stop: no new connections, let open ones finish
        await fp.close()
    """

    def __init__(
        self,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        settings: ProxySettings | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self._requested_port = port
        self.port = port
        self.settings = settings or ProxySettings()
        self._clock: Clock = clock or SystemClock()
        self._balancer = Balancer(self.settings.balance)
        self._stats = PortStats()
        self._buckets: tuple[TokenBucket, TokenBucket] | None = None
        if self.settings.bandwidth is not None:
            rate, burst = self.settings.bandwidth, self.settings.burst
            self._buckets = (TokenBucket(rate, self._clock, burst), TokenBucket(rate, self._clock, burst))
        # Open connections per backend incarnation (ready, draining or removed); an entry goes when its
        # last connection ends. Bounded by the open connections.
        self._conns: dict[Backend, set[Splice]] = {}
        self._idle: dict[Backend, asyncio.Future[None]] = {}  # drains waiting for a backend to empty
        self._splices: set[Splice] = set()  # every accepted connection still open; bounded the same way
        # FIFO of connections waiting for a slot; bounded by settings.max_queue.
        self._slot_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._slots_used = 0
        self._backend_waiters = 0
        self._pool_changed: asyncio.Future[None] | None = None
        self._server: asyncio.Server | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._stop: asyncio.Future[None] | None = None
        replay = self.settings.replay
        self._replay_limit = self.settings.replay_buffer if replay else 0
        self._max_replays = self.settings.max_replays if replay else 0

    # -- life cycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen on ``host:port``.

        Raises:
            SupervisionError: S004 when the port is taken; the message names the holder when visible.
            NetworkError: E010 for any other bind failure (bad address, permission).
        """
        if self._server is not None:
            raise RuntimeError(f"front port {self.name} already started")
        loop = asyncio.get_running_loop()
        self._stop = loop.create_future()
        started: asyncio.Future[None] = loop.create_future()
        self._runner = asyncio.create_task(self._run(started), name=f"front-port:{self.name}")
        await started
        try:
            self._server = await loop.create_server(
                self._new_splice, self.host, self._requested_port, backlog=BACKLOG
            )
        except OSError as exc:
            await self._stop_runner()
            raise await self._bind_error(exc) from exc
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _run(self, started: asyncio.Future[None]) -> None:
        assert self._stop is not None
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                started.set_result(None)
                await self._stop
                for splice in list(self._splices):
                    splice.abort()
                # Leaving the group by an exception cancels every handler still waiting (for a slot,
                # a backend or a connect) at once, instead of letting each run out its timeout.
                raise _Closing
        except* _Closing:
            pass
        finally:
            self._tg = None

    async def _stop_runner(self) -> None:
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(None)
        if self._runner is not None:
            await self._runner
            self._runner = None

    async def _bind_error(self, exc: OSError) -> Exception:
        where = f"{self.host}:{self._requested_port}"
        if exc.errno == errno.EADDRINUSE:
            holder = await asyncio.to_thread(describe_holder, self.host, self._requested_port)
            return SupervisionError(
                f"front port {where} of {self.name} is taken by {holder}",
                code=ErrorCode.S004,
                hint="stop that program, or expose the port as `auto`",
            )
        return NetworkError(f"cannot listen on {where} for {self.name}: {exc.strerror or exc}")

    async def close(self) -> None:
        """Stop listening, close every open connection and wait for their handlers. Idempotent."""
        if self._server is not None:
            self._server.close()
        for fut in self._slot_waiters:
            if not fut.done():
                fut.cancel()
        self._slot_waiters.clear()
        await self._stop_runner()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FrontPort:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- membership -----------------------------------------------------------------------------------

    def add_backend(self, backend_id: str, host: str, port: int) -> None:
        """A replica became ready: new connections may go to it from now on.

        Adding an id that is in the pool replaces it; one that is draining becomes a new backend and
        the drain goes on for the old connections.
        """
        self._balancer.add(backend_id, host, port)
        fut = self._pool_changed
        if fut is not None:
            self._pool_changed = None
            if not fut.done():
                fut.set_result(None)

    def remove_backend(self, backend_id: str) -> bool:
        """A replica stopped being ready: no new connection goes to it. Open ones are left alone.

        Returns:
            False when the id was not in the pool.
        """
        backend = self._balancer.remove(backend_id)
        if backend is not None:
            self._maybe_idle(backend)
        return backend is not None

    async def drain(self, backend_id: str, timeout: float) -> int:
        """Stop new connections to a backend, wait for its open ones to end, close the rest at ``timeout``.

        Also covers connections of a backend already removed with :meth:`remove_backend`.

        Returns:
            how many connections were still open at the deadline and were closed by the proxy.
        """
        self._balancer.remove(backend_id, BackendState.DRAINING)
        targets = [b for b in self._conns if b.id == backend_id and b.state is not BackendState.READY]
        if not targets:
            return 0
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[None]] = []
        for backend in targets:
            backend.state = BackendState.DRAINING
            fut = self._idle.get(backend)
            if fut is None:
                fut = self._idle[backend] = loop.create_future()
            waits.append(fut)
        all_idle = asyncio.gather(*waits)
        await self._wait_any(self._clock.now() + timeout, all_idle)
        all_idle.cancel()
        closed = 0
        for backend in targets:
            for splice in list(self._conns.get(backend, ())):
                splice.abort()
                closed += 1
            self._idle.pop(backend, None)
        self._stats.closed_at_drain += closed
        return closed

    # -- reading --------------------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """True while at least one backend is ready."""
        return len(self._balancer) > 0

    @property
    def counters(self) -> PortStats:
        """The live running totals and histograms (read on the loop; :meth:`stats` is their JSON)."""
        return self._stats

    def stats(self) -> dict[str, object]:
        """Counters, pool and settings as plain data (JSON-ready)."""
        out: dict[str, object] = {
            "name": self.name,
            "host": self.host,
            "port": self.port,
            "balance": str(self._balancer.policy),
            "available": self.available,
            "ready_backends": len(self._balancer),
            "bandwidth": self.settings.bandwidth,
            "max_connections": self.settings.max_connections,
        }
        out.update(self._stats.to_dict())
        pool = list(self._balancer)
        seen = set(pool)
        pool.extend(b for b in self._conns if b not in seen)
        out["backends"] = [
            {
                "id": b.id,
                "host": b.host,
                "port": b.port,
                "state": str(b.state),
                "active": b.active,
                "total": b.total,
                "connect_failures": b.connect_failures,
            }
            for b in pool
        ]
        return out

    # -- connections ----------------------------------------------------------------------------------

    def _new_splice(self) -> asyncio.Protocol:
        return Splice(
            self._stats,
            self._clock,
            self._accepted,
            self._buckets,
            replay_limit=self._replay_limit,
            max_replays=self._max_replays,
        ).client

    def _accepted(self, splice: Splice) -> None:
        tg = self._tg
        if tg is None:  # closing
            splice.abort()
            return
        handler = self._handle(splice)
        try:
            tg.create_task(handler)
        except RuntimeError:  # the group is shutting down (close() raced this accept)
            handler.close()
            splice.abort()
            return
        self._splices.add(splice)
        self._stats.connections_total += 1
        self._stats.connections_active += 1

    async def _handle(self, splice: Splice) -> None:
        try:
            if not await self._admit(splice):
                splice.abort()
                return
            try:
                if await self._connect(splice):
                    await self._pump(splice)
                else:
                    splice.abort()
            finally:
                self._release_slot()
        except asyncio.CancelledError:
            splice.abort()
            raise
        except Exception:  # a bug must cost one connection, never the port
            self._stats.errors += 1
            splice.abort()
        finally:
            self._splices.discard(splice)
            self._stats.connections_active -= 1
            if splice.backend is not None:
                self._detach(splice, splice.backend)

    async def _admit(self, splice: Splice) -> bool:
        cap = self.settings.max_connections
        if cap is None:
            return True
        if self._slots_used < cap:
            self._slots_used += 1
            return True
        if len(self._slot_waiters) >= self.settings.max_queue:
            self._stats.refused += 1
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(fut)
        self._stats.queued += 1
        try:
            await self._wait_any(self._clock.now() + self.settings.queue_timeout, fut, splice.finished)
        except BaseException:
            # Cancelled while queued: give back a slot handed over meanwhile, or leave the queue.
            if fut.done() and not fut.cancelled():
                self._release_slot()
            else:
                fut.cancel()
                with contextlib.suppress(ValueError):
                    self._slot_waiters.remove(fut)
            raise
        finally:
            self._stats.queued -= 1
        if fut.done() and not fut.cancelled():
            return True  # the slot was handed over by _release_slot
        fut.cancel()
        with contextlib.suppress(ValueError):
            self._slot_waiters.remove(fut)
        self._stats.refused += 1
        return False

    def _release_slot(self) -> None:
        if self.settings.max_connections is None:
            return
        while self._slot_waiters:
            fut = self._slot_waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # hand the slot over: _slots_used stays
                return
        self._slots_used -= 1

    async def _connect(self, splice: Splice, failed: Backend | None = None) -> bool:
        """Reach a ready backend within ``connect_timeout``; False when none could be reached.

        For a replay, ``failed`` is the backend that ended without answering: it is tried last, and
        the budget runs from the failure.
        """
        clock = self._clock
        loop = asyncio.get_running_loop()
        start = clock.now() if failed is None else splice.failed_at
        deadline = start + self.settings.connect_timeout
        tried: set[Backend] = set() if failed is None else {failed}
        while not splice.client.lost:
            backend = self._balancer.pick(tried, clock.now())
            if backend is None:
                if not await self._wait_for_backend(splice, deadline, retry=bool(tried)):
                    break
                tried.clear()
                continue
            remaining = deadline - clock.now()
            if remaining <= 0:
                break
            if len(self._balancer) - len(tried) > 1:
                remaining /= 2  # others are left to try: do not spend the whole budget on one
            upstream = splice.new_upstream()
            self._attach(splice, backend)
            try:
                async with asyncio.timeout(remaining):
                    await loop.create_connection(upstream.factory, backend.host, backend.port)
            except (OSError, TimeoutError):
                self._detach(splice, backend)
                self._balancer.suspect(backend, clock.now() + SUSPECT_S)
                backend.connect_failures += 1
                self._stats.connect_retries += 1
                tried.add(backend)
                continue
            except BaseException:
                self._detach(splice, backend)
                upstream.abort()
                raise
            if backend.suspect_until:
                self._balancer.clear_suspect(backend)
            if not splice.join(upstream, backend):
                self._detach(splice, backend)
                return False
            if failed is None:
                self._stats.upstream_connect.observe(clock.now() - start)
            else:
                self._stats.replays += 1
            return True
        if not splice.client.lost:
            self._stats.no_backend += 1
        return False

    async def _wait_for_backend(self, splice: Splice, deadline: float, *, retry: bool) -> bool:
        """Wait for the pool to change (after failed connects: a short pause); False at the deadline."""
        if self._clock.now() >= deadline:
            return False
        if self._backend_waiters >= self.settings.max_queue:
            return False
        if self._pool_changed is None:
            self._pool_changed = asyncio.get_running_loop().create_future()
        until = min(deadline, self._clock.now() + _RETRY_PAUSE) if retry else deadline
        self._backend_waiters += 1
        self._stats.queued += 1
        try:
            await self._wait_any(until, self._pool_changed, splice.finished)
        finally:
            self._backend_waiters -= 1
            self._stats.queued -= 1
        return self._clock.now() < deadline and not splice.client.lost

    async def _pump(self, splice: Splice) -> None:
        """Wait for the connection to end, writing held chunks on time when the port is shaped.

        When the backend side is detached (it ended without answering), connect another backend and
        let the splice replay to it.
        """
        loop = asyncio.get_running_loop()
        while True:
            if self._buckets is None:
                await splice.detached
            else:
                while not splice.detached.done():
                    splice.wake = loop.create_future()
                    at = splice.next_release()
                    await self._wait_any(math.inf if at is None else at, splice.wake, splice.detached)
                    splice.release_due(self._clock.now())
            if splice.finished.done():
                return
            failed = splice.backend
            if failed is not None:
                splice.backend = None
                self._detach(splice, failed)
                self._balancer.suspect(failed, self._clock.now() + SUSPECT_S)
            if not await self._connect(splice, failed):
                splice.abort()
                return

    def _attach(self, splice: Splice, backend: Backend) -> None:
        # From the connect attempt on, so least-conn sees connects in flight and a drain waits for them.
        self._balancer.acquire(backend)
        self._conns.setdefault(backend, set()).add(splice)

    def _detach(self, splice: Splice, backend: Backend) -> None:
        self._balancer.release(backend)
        conns = self._conns.get(backend)
        if conns is not None:
            conns.discard(splice)
            if not conns:
                del self._conns[backend]
        self._maybe_idle(backend)

    def _maybe_idle(self, backend: Backend) -> None:
        if backend.active == 0:
            fut = self._idle.pop(backend, None)
            if fut is not None and not fut.done():
                fut.set_result(None)

    async def _wait_any(self, deadline: float, *waits: Awaitable[object]) -> None:
        """Return when any of ``waits`` completes or at ``deadline`` on the clock (inf: no deadline).

        ``waits`` that are futures are left as they are; only the timer this creates is cancelled.
        """
        futs = [asyncio.ensure_future(w) for w in waits]
        timer: asyncio.Future[None] | None = None
        if deadline != math.inf:
            if deadline <= self._clock.now():
                return
            timer = asyncio.ensure_future(self._clock.sleep_until(deadline))
            futs.append(timer)
        try:
            await asyncio.wait(futs, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if timer is not None:
                timer.cancel()
