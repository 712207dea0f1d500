"""``NotifyEndpoint``: the receiving end of the systemd notify protocol, one per replica.

The replica gets ``NOTIFY_SOCKET=@deploy-code/...`` in its environment and sends datagrams such as
``READY=1\\nSTATUS=listening``. The socket lives in the Linux abstract namespace (the ``@`` stands for a
leading NUL byte), so there is no path-length limit to meet and no file to clean up. Reading is
event-driven: the socket is registered with ``loop.add_reader``; nothing polls it.

Abstract sockets are not protected by file permissions; any local process in the same network namespace
that guesses the name can send to it. The sender's pid is recorded (``SO_PASSCRED``) in
:attr:`NotifyEndpoint.sender_pid` so that the supervisor can compare it with the replica's process.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import socket
import struct
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["MAX_DATAGRAM_BYTES", "NotifyEndpoint"]

# systemd's own limit for one notification is of this order; longer datagrams are dropped, not parsed.
MAX_DATAGRAM_BYTES = 4096
# A chatty or hostile sender cannot keep the loop busy: at most this many datagrams per wake-up.
MAX_DATAGRAMS_PER_WAKEUP = 64
# STATUS= is shown to people in one line.
MAX_STATUS_CHARS = 256
# sun_path is 108 bytes; one goes to the leading NUL of an abstract name.
_MAX_ABSTRACT_BYTES = 107
_UCRED = struct.Struct("iII")  # struct ucred: pid_t pid, uid_t uid, gid_t gid
_ANCILLARY_BYTES = socket.CMSG_SPACE(_UCRED.size)
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.\-/]")
_counter = itertools.count()  # makes names unique within this process


class NotifyEndpoint:
    """A bound, non-blocking ``AF_UNIX``/``SOCK_DGRAM`` socket that listens for ``READY=1``.

    Create it with :meth:`open` on the orchestrator's loop; call :meth:`close` when the replica is gone.

    Attributes:
        address: the value for ``$NOTIFY_SOCKET``: ``"@"`` followed by the abstract name.
        ready: set once a ``READY=1`` line arrived.
        stopping: set once a ``STOPPING=1`` line arrived.
        status: the last ``STATUS=`` text, if any (cut to ``MAX_STATUS_CHARS``).
        sender_pid: pid of the process that sent the last accepted datagram, if the kernel told us.
        dropped: datagrams ignored because they were longer than ``MAX_DATAGRAM_BYTES``.
    """

    def __init__(self, sock: socket.socket, abstract_name: str, loop: asyncio.AbstractEventLoop) -> None:
        """Wrap an already bound socket; use :meth:`open` instead."""
        self._sock: socket.socket | None = sock
        self._loop = loop
        self.address = "@" + abstract_name
        self.ready = False
        self.stopping = False
        self.status: str | None = None
        self.sender_pid: int | None = None
        self.dropped = 0

    @classmethod
    def open(cls, name: str) -> NotifyEndpoint:
        """Bind a fresh endpoint and register it with the running loop.

        Args:
            name: a label for the replica (e.g. ``"web/0"``); it only needs to be readable, the
                name is made unique with the pid and a counter.

        Returns:
            The endpoint, already listening.

        Raises:
            RuntimeError: no event loop is running.
            OSError: the socket could not be created or bound.
        """
        loop = asyncio.get_running_loop()
        abstract = _abstract_name(name)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
            sock.bind("\0" + abstract)
            endpoint = cls(sock, abstract, loop)
            loop.add_reader(sock.fileno(), endpoint._on_readable)
        except BaseException:
            sock.close()
            raise
        return endpoint

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._sock is None

    def reset(self) -> None:
        """Forget what was received (e.g. before the replica's process is started again)."""
        self.ready = False
        self.stopping = False
        self.status = None
        self.sender_pid = None

    def close(self) -> None:
        """Unregister and close the socket. Idempotent."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        if not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
        sock.close()

    def __enter__(self) -> NotifyEndpoint:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _on_readable(self) -> None:
        for _ in range(MAX_DATAGRAMS_PER_WAKEUP):
            sock = self._sock
            if sock is None:
                return
            try:
                data, ancdata, flags, _addr = sock.recvmsg(MAX_DATAGRAM_BYTES, _ANCILLARY_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # A datagram socket has no peer to lose; any other error is transient. Try next wake-up.
                return
            if flags & socket.MSG_TRUNC:
                self.dropped += 1
                continue
            self._accept(data, _sender_pid(ancdata))

    def _accept(self, data: bytes, pid: int | None) -> None:
        if pid is not None:
            self.sender_pid = pid
        for line in data.split(b"\n"):
            key, sep, value = line.partition(b"=")
            if not sep:
                continue
            if key == b"READY" and value == b"1":
                self.ready = True
            elif key == b"STOPPING" and value == b"1":
                self.stopping = True
            elif key == b"STATUS":
                self.status = value.decode("utf-8", "replace")[:MAX_STATUS_CHARS]


def _abstract_name(name: str) -> str:
    prefix = f"deploy-code/{os.getpid()}/"
    suffix = f"/{next(_counter)}"
    label = _UNSAFE_NAME_CHARS.sub("_", name) or "replica"
    room = _MAX_ABSTRACT_BYTES - len(prefix) - len(suffix)  # all ASCII after sanitising
    return prefix + label[:room] + suffix


def _sender_pid(ancdata: list[tuple[int, int, bytes]]) -> int | None:
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS and len(payload) >= _UCRED.size:
            pid, _uid, _gid = _UCRED.unpack_from(payload)
            return int(pid)
    return None
