"""One proxied connection: two asyncio protocols that copy bytes to each other.

Protocols rather than streams: a chunk read on one side is written to the other inside the same
``data_received`` callback, with no task switch and no copy, which is what keeps the added latency
in the tens of microseconds. The rules the pair follows:

* **Back-pressure.** When one side's write buffer passes its high-water mark (``pause_writing``), the
  *other* side stops reading until it drains (``resume_writing``): memory per connection stays at
  the transports' buffer limits.
* **Half-close.** EOF from one side becomes ``write_eof`` on the other, and the connection stays open
  the other way, so a client may send its request, shut down writing, and still read the answer.
  When both directions have ended, both sockets are closed.
* **Errors.** A side lost with an error aborts the other side (a reset is passed on as a reset); a
  side closed cleanly closes the other after its buffered bytes are written.
* **Shaping.** With a :class:`~deploy_code.network.bucket.TokenBucket` per direction, a chunk that
  the bucket cannot pay for yet is *held*: the side stops reading and the owner task writes the
  chunk at the bucket's time (:meth:`Splice.release_due`). At most one chunk per direction is held.
* **Replay on empty upstream.** Until the backend's first byte, the bytes written to it are kept
  (references to the chunks, at most ``replay_limit`` bytes; past that, replay is off for the
  connection). If the backend side ends (EOF, reset) before sending a byte, the client side is not
  closed: it stops reading, the backend side is *detached* (:attr:`Splice.detached`), and the owner
  connects another backend and calls :meth:`Splice.join` again, which re-sends the kept bytes, and
  the client's EOF if it had sent one. The first backend byte drops what was kept.

The owner task (``FrontPort``'s handler for this connection) waits on :attr:`Splice.detached` (done
at a detach or when the connection has ended), and on :attr:`Splice.wake` when shaping, so every timer
and every reconnect lives in a task that someone owns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

from deploy_code.clock import Clock
from deploy_code.network.balancer import Backend
from deploy_code.network.bucket import TokenBucket
from deploy_code.network.stats import PortStats

__all__ = ["Side", "Splice"]

# Reasons a side does not read; it reads only while none applies.
_FLOW = 1  # the other side's write buffer is full
_SHAPE = 2  # holding a chunk until the bucket pays for it
_WAIT = 4  # the client side before its backend is connected
_EARLY = 8  # bytes came before the two sides were joined (see data_received)


class Side(asyncio.Protocol):
    """One socket of a :class:`Splice`: the client's (accepted) or the backend's (dialled)."""

    __slots__ = (
        "_paused",
        "bucket",
        "client",
        "early",
        "eof",
        "held",
        "lost",
        "peer",
        "resume_at",
        "splice",
        "transport",
    )

    def __init__(self, splice: Splice, *, client: bool, bucket: TokenBucket | None) -> None:
        self.splice = splice
        self.client = client
        self.bucket = bucket
        self.transport: asyncio.Transport | None = None
        self.peer: Side | None = None
        self._paused = 0
        self.eof = False
        self.lost = False
        self.held: bytes | None = None
        self.resume_at = 0.0
        self.early: list[bytes] = []  # read before the peer was joined; bounded by the pause (see above)

    # -- reading control ------------------------------------------------------------------------------

    def _pause(self, why: int) -> None:
        was = self._paused
        self._paused |= why
        if not was and self.transport is not None and not self.lost:
            self.transport.pause_reading()

    def _resume(self, why: int) -> None:
        was = self._paused
        self._paused &= ~why
        if was and not self._paused and self.transport is not None and not self.lost:
            self.transport.resume_reading()

    # -- asyncio.Protocol -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # cast, not isinstance: uvloop's transports implement the interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        if self.client:
            self._paused = _WAIT
            self.transport.pause_reading()
            self.splice.on_client(self)

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None:
            # Before the join. The client side: the default loop honours the pause in connection_made,
            # uvloop starts reading after it. The backend side: a server that speaks first (a banner)
            # may send before create_connection returns. Keep what came (a chunk or so) and pause.
            self.early.append(data)
            self._paused |= _EARLY
            if self.transport is not None:
                self.transport.pause_reading()
            return
        if peer.transport is None or peer.lost:
            return
        splice = self.splice
        n = len(data)
        stats = splice.stats
        if self.client:
            stats.bytes_in += n
            if splice.first_sent_at is None:
                splice.first_sent_at = splice.clock.now()
        else:
            stats.bytes_out += n
            if not splice.answered:
                splice.heard()
            if splice.first_sent_at is not None and not splice.first_byte_seen:
                splice.first_byte_seen = True
                stats.upstream_first_byte.observe(splice.clock.now() - splice.first_sent_at)
        bucket = self.bucket
        if bucket is not None:
            at = bucket.reserve(n)
            if at > splice.clock.now():
                self.held = data
                self.resume_at = at
                self._pause(_SHAPE)
                splice.poke()
                return
        if self.client and splice.kept is not None:
            splice.keep(data)
        peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        if self.peer is None:
            # Before the join (uvloop), or the client side while its backend is replaced: passed on
            # by Splice.join.
            return True
        if not self.client and self.splice.replayable(self):
            return False  # the backend closed without answering: let it close, on_lost replays
        if self.held is not None:
            return True  # EOF is passed on after the held chunk (release_due)
        return self.splice.pass_eof(self)

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer._pause(_FLOW)

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer._resume(_FLOW)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.held = None
        self.splice.on_lost(self, exc)

    # -- used by the owner ----------------------------------------------------------------------------

    def factory(self) -> Side:
        """A protocol factory that returns this side (for ``loop.create_connection``)."""
        return self

    def start_reading(self) -> None:
        """Let the client side read (its backend is connected)."""
        self._resume(_WAIT)

    def joined(self) -> None:
        """After the join: read again, and pass on an EOF that came before it."""
        self._resume(_EARLY)
        if self.eof and self.held is None and not self.lost:
            if not self.client and self.splice.replayable(self):
                self.close()  # the backend ended before the join without a byte: on_lost replays
            elif not self.splice.pass_eof(self):
                self.close()

    def release(self) -> None:
        """Write the held chunk to the peer and read again (the bucket has paid for it)."""
        peer = self.peer
        if peer is None:
            return  # the client side while its backend is replaced: released after the join
        data, self.held = self.held, None
        if data is not None and peer.transport is not None and not peer.lost:
            if self.client and self.splice.kept is not None:
                self.splice.keep(data)
            peer.transport.write(data)
        self._resume(_SHAPE)
        if self.eof and not self.lost and not self.splice.pass_eof(self) and self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        """Close the socket after its buffered bytes are written."""
        if self.transport is not None and not self.lost:
            self.transport.close()

    def abort(self) -> None:
        """Drop the socket now (no flush)."""
        if self.transport is not None and not self.lost:
            self.transport.abort()


class Splice:
    """The state of one proxied connection, from accept to both sockets closed.

    Args:
        stats: the port's counters (bytes, first-byte latency).
        clock: for shaping deadlines and latency.
        on_client: called once with the client :class:`Side` when the connection is accepted.
        buckets: ``(client -> backend, backend -> client)`` buckets, or None when unshaped.
        replay_limit: most bytes kept for a replay (0: never replay).
        max_replays: most replays of this connection.
    """

    __slots__ = (
        "answered",
        "backend",
        "buckets",
        "client",
        "clock",
        "closing",
        "detached",
        "failed_at",
        "finished",
        "first_byte_seen",
        "first_sent_at",
        "kept",
        "kept_size",
        "loop",
        "max_replays",
        "on_accept",
        "replay_limit",
        "replays",
        "stats",
        "upstream",
        "wake",
    )

    def __init__(
        self,
        stats: PortStats,
        clock: Clock,
        on_client: Callable[[Splice], None],
        buckets: tuple[TokenBucket, TokenBucket] | None,
        *,
        replay_limit: int = 0,
        max_replays: int = 0,
    ) -> None:
        self.stats = stats
        self.clock = clock
        self.on_accept = on_client
        self.buckets = buckets
        self.client = Side(self, client=True, bucket=None if buckets is None else buckets[0])
        self.upstream: Side | None = None
        self.backend: Backend | None = None
        self.loop = loop = asyncio.get_running_loop()
        # Done when the client side is lost and, if one was connected, the backend side too.
        self.finished: asyncio.Future[None] = loop.create_future()
        # Done when the joined backend side is detached for a replay, or when `finished` is.
        self.detached: asyncio.Future[None] = loop.create_future()
        # Set when a side starts holding a chunk, so the owner re-computes its next deadline.
        self.wake: asyncio.Future[None] | None = None
        self.first_sent_at: float | None = None
        self.first_byte_seen = False
        # Replay state: the chunks written to the backend before its first byte (None: replay is off),
        # their size, whether a backend byte came, how many replays were started, when the last failed.
        self.replay_limit = replay_limit
        self.max_replays = max_replays
        self.kept: list[bytes] | None = [] if replay_limit > 0 and max_replays > 0 else None
        self.kept_size = 0
        self.answered = False
        self.replays = 0
        self.failed_at = 0.0
        self.closing = False  # the proxy is dropping the connection: never replay

    def on_client(self, side: Side) -> None:
        """The client side was accepted: hand the splice to its owner."""
        self.on_accept(self)

    def new_upstream(self) -> Side:
        """A fresh backend-side protocol for one connect attempt."""
        bucket = None if self.buckets is None else self.buckets[1]
        return Side(self, client=False, bucket=bucket)

    def join(self, upstream: Side, backend: Backend) -> bool:
        """Pair ``upstream`` (connected) with the client and let bytes flow; False if the client left.

        After a detach (a replay), the kept bytes go to ``upstream`` first, then what the client sent
        meanwhile, then its EOF if it had sent one.
        """
        if self.client.lost or self.closing:
            upstream.abort()
            return False
        self.upstream = upstream
        self.backend = backend
        upstream.peer = self.client
        self.client.peer = upstream
        if self.detached.done():
            self.detached = self.loop.create_future()
        if self.kept and upstream.transport is not None:
            upstream.transport.write(b"".join(self.kept))
        for side in (upstream, self.client):
            early, side.early = side.early, []
            for chunk in early:
                side.data_received(chunk)
        self.client.start_reading()
        for side in (upstream, self.client):
            side.joined()
        if upstream.lost:  # lost before the join, after sending something: pass the end on
            self.on_lost(upstream, None)
        return True

    def keep(self, data: bytes) -> None:
        """``data`` was written to the backend: keep it for a replay, or turn replay off past the limit."""
        kept = self.kept
        if kept is None:
            return
        size = self.kept_size + len(data)
        if size > self.replay_limit:
            self.kept = None  # too big to keep: replay is off for this connection
            self.kept_size = 0
            return
        self.kept_size = size
        kept.append(data)

    def heard(self) -> None:
        """The backend sent its first byte: it answered, nothing will be replayed."""
        self.answered = True
        self.kept = None
        self.kept_size = 0

    def replayable(self, side: Side) -> bool:
        """Whether the end of backend side ``side`` is to be replayed instead of passed on."""
        return (
            side is self.upstream
            and self.kept is not None
            and not self.answered
            and self.replays < self.max_replays
            and not self.closing
            and not self.client.lost
            and self.client.transport is not None
            and (self.kept_size > 0 or not self.client.eof)  # a client that sent nothing and left
        )

    # -- callbacks from the sides ---------------------------------------------------------------------

    def pass_eof(self, side: Side) -> bool:
        """``side`` read EOF: half-close the other way, or close both when both ends are done."""
        peer = side.peer
        if peer is None or peer.transport is None or peer.lost:
            return False  # nothing to pass it to: let the transport close
        if side.client and peer.eof and self.replayable(peer):
            return True  # its backend ended without answering and is closing: the replay passes it on
        if peer.eof:
            peer.transport.close()
            return False
        if peer.transport.can_write_eof():
            peer.transport.write_eof()
            return True
        peer.transport.close()
        return False

    def on_lost(self, side: Side, exc: Exception | None) -> None:
        """``side`` closed: close or abort the other, and finish when both are gone.

        The backend side ending before it sent a byte, while a replay is allowed, detaches it instead:
        the client side stops reading and stays open, and the owner connects another backend.
        """
        if self.replayable(side):
            client = self.client
            side.peer = None
            client.peer = None
            client._pause(_WAIT)
            client._resume(_FLOW)  # the dead side's full buffer paused the client; the next one decides
            self.replays += 1
            self.failed_at = self.clock.now()
            self.poke()
            if not self.detached.done():
                self.detached.set_result(None)
            return
        peer = side.peer
        if peer is not None and not peer.lost and peer.transport is not None:
            if exc is None:
                peer.transport.close()
            else:
                peer.transport.abort()
        self.poke()
        if self.client.lost and (self.upstream is None or self.upstream.lost) and not self.finished.done():
            self.finished.set_result(None)
            if not self.detached.done():
                self.detached.set_result(None)

    def poke(self) -> None:
        """Wake the owner if it waits on :attr:`wake`."""
        wake = self.wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    # -- used by the owner ----------------------------------------------------------------------------

    def next_release(self) -> float | None:
        """The earliest time a held chunk may go, or None when nothing is held."""
        times = [s.resume_at for s in (self.client, self.upstream) if s is not None and s.held is not None]
        return min(times) if times else None

    def release_due(self, now: float) -> None:
        """Write every held chunk whose time has come."""
        for side in (self.client, self.upstream):
            if side is not None and side.held is not None and side.resume_at <= now:
                side.release()

    def abort(self) -> None:
        """Drop both sockets now."""
        self.closing = True
        self.client.abort()
        if self.upstream is not None:
            self.upstream.abort()
