"""``ListenWatcher``: learn the moment a port starts listening, for every starting replica at once.

A starting replica is probed fast, but a fixed cadence still adds up to one period of delay per
dependency link (10 ms, then 20, 40, ... with doubling). Instead, while any tcp or http check waits for
its first pass, one task asks the kernel for the host's listening TCP sockets (``sock_diag`` over
netlink: one dump of LISTEN sockets for IPv4 and one for IPv6, no per-replica connect) every
``interval`` and wakes the checks whose port appeared. The check then runs for real; the watcher only
tells it when to look. The cost is two small syscalls per tick, whatever the number of replicas, and
only while something is starting: with no waiter the task ends.

Where netlink is unavailable (not Linux, a sandbox without ``NETLINK_SOCK_DIAG``), ``wait`` never fires
and the probe cadence alone decides, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct

__all__ = ["ListenWatcher", "listening_ports"]

log = logging.getLogger(__name__)

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 0x1
_NLM_F_DUMP = 0x300
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_TCP_LISTEN = 10
_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states; then inet_diag_sockid (48 bytes, all zero).
_REQ = struct.Struct("=BBBBI48x")
_SPORT = struct.Struct("!H")  # inet_diag_msg: 4 bytes (family, state, timer, retrans), then sport (BE)
_RECV_BYTES = 1 << 16


def _request(family: int, seq: int) -> bytes:
    body = _REQ.pack(family, socket.IPPROTO_TCP, 0, 0, 1 << _TCP_LISTEN)
    return _HDR.pack(_HDR.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST | _NLM_F_DUMP, seq, 0) + body


def _parse(buf: bytes, into: set[int]) -> bool:
    """Add the source ports of the messages in ``buf`` to ``into``; True once the dump is done."""
    off = 0
    while off + _HDR.size <= len(buf):
        length, kind, _flags, _seq, _pid = _HDR.unpack_from(buf, off)
        if length < _HDR.size:
            return True  # malformed: stop rather than loop
        if kind == _NLMSG_DONE:
            return True
        if kind == _NLMSG_ERROR:
            raise OSError("sock_diag dump failed")
        if kind == _SOCK_DIAG_BY_FAMILY and length >= _HDR.size + 6:
            (port,) = _SPORT.unpack_from(buf, off + _HDR.size + 4)
            into.add(port)
        off += (length + 3) & ~3
    return False


def _open() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG)
    sock.setblocking(False)
    return sock


async def _dump(loop: asyncio.AbstractEventLoop, sock: socket.socket, seq: int) -> set[int]:
    ports: set[int] = set()
    for family in (socket.AF_INET, socket.AF_INET6):
        await loop.sock_sendall(sock, _request(family, seq))
        done = False
        while not done:
            done = _parse(await loop.sock_recv(sock, _RECV_BYTES), ports)
    return ports


def listening_ports() -> set[int]:
    """The TCP ports something listens on in this network namespace (blocking; for tests and tools)."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as sock:
        ports: set[int] = set()
        for family in (socket.AF_INET, socket.AF_INET6):
            sock.send(_request(family, 1))
            while not _parse(sock.recv(_RECV_BYTES), ports):
                pass
        return ports


class ListenWatcher:
    """Wakes waiters when their port starts listening.

    Args:
        interval: seconds between two kernel queries while someone waits.
    """

    def __init__(self, interval: float = 0.002) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self.interval = interval
        # port -> futures of the checks waiting for it; one entry per starting replica's probe, each
        # removed when it fires or its waiter gives up: bounded by the replicas starting at once.
        self._waiters: dict[int, set[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._sock: socket.socket | None = None
        self._broken = False
        self._seq = 0

    @property
    def available(self) -> bool:
        """False once the kernel query failed: waits then never fire."""
        return not self._broken

    def __len__(self) -> int:
        return sum(len(s) for s in self._waiters.values())

    async def wait(self, port: int) -> None:
        """Return once ``port`` is listening (on any address). Cancel it to stop waiting."""
        if self._broken:
            await asyncio.Event().wait()  # never: the caller's own timer decides
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.setdefault(port, set()).add(fut)
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._watch(), name="listen-watcher")
        try:
            await fut
        finally:
            waiting = self._waiters.get(port)
            if waiting is not None:
                waiting.discard(fut)
                if not waiting:
                    del self._waiters[port]

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._sock is None:
                self._sock = _open()
            while self._waiters:
                self._seq = (self._seq + 1) & 0xFFFFFFFF
                ports = await _dump(loop, self._sock, self._seq)
                for port in ports & self._waiters.keys():
                    for fut in self._waiters.pop(port):
                        if not fut.done():
                            fut.set_result(None)
                if self._waiters:
                    await asyncio.sleep(self.interval)
        except OSError as exc:
            log.info("listening-socket queries unavailable (%s); probes keep their own cadence", exc)
            self._broken = True
            self.close()

    def close(self) -> None:
        """Stop querying and release the netlink socket (waiters fall back to their timers)."""
        if self._task is not None and not self._task.done() and self._task is not asyncio.current_task():
            self._task.cancel()
        self._task = None
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
