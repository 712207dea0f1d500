"""A minimal inotify binding (ctypes on libc's ``inotify_init1`` / ``inotify_add_watch``).

Only what :class:`LogFollower` needs: directory watches and event parsing. ``Inotify.create()`` returns
None where inotify is unavailable (no symbol in libc, ``ENOSYS``, or ``EMFILE`` when the per-user instance
limit is reached); the follower then falls back to polling.
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterator

__all__ = ["IN_Q_OVERFLOW", "Inotify"]

IN_MODIFY = 0x00000002
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
# A log file changes content (written, truncated) or identity (created, replaced, removed).
DIR_MASK = IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ONLYDIR

_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then len bytes of name
_READ_SIZE = 65536  # bytes per read(); events beyond it wait for the next read


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        # Touch the symbols now so a libc without inotify fails here, not later.
        libc.inotify_init1.argtypes = [ctypes.c_int]
        libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
        libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    except (OSError, AttributeError):
        return None
    return libc


class Inotify:
    """One inotify instance: a non-blocking, close-on-exec fd to register with ``loop.add_reader``."""

    def __init__(self, libc: ctypes.CDLL, fd: int) -> None:
        self._libc = libc
        self.fd = fd

    @classmethod
    def create(cls) -> Inotify | None:
        """Open an instance, or return None where inotify is unavailable."""
        libc = _load_libc()
        if libc is None:
            return None
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        return cls(libc, fd)

    def add_dir(self, path: str) -> int:
        """Watch directory ``path``; returns its watch descriptor (the same one for the same directory).

        Raises:
            OSError: e.g. ``ENOENT`` (no such directory) or ``ENOSPC`` (watch limit reached).
        """
        wd = int(self._libc.inotify_add_watch(self.fd, os.fsencode(path), DIR_MASK))
        if wd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        return wd

    def remove(self, wd: int) -> None:
        """Remove a watch (errors ignored: the directory may be gone, which removes it already)."""
        self._libc.inotify_rm_watch(self.fd, wd)

    def read_events(self) -> Iterator[tuple[int, int, str]]:
        """Yield the pending events as ``(wd, mask, name)`` without blocking."""
        while True:
            try:
                buf = os.read(self.fd, _READ_SIZE)
            except BlockingIOError:
                return
            if not buf:
                return
            off = 0
            while off + _EVENT.size <= len(buf):
                wd, mask, _cookie, length = _EVENT.unpack_from(buf, off)
                off += _EVENT.size
                name = os.fsdecode(buf[off : off + length].rstrip(b"\0"))
                off += length
                yield wd, mask, name

    def close(self) -> None:
        """Close the fd (which removes every watch)."""
        os.close(self.fd)
