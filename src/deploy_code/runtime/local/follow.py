"""``LogFollower``: event-driven following of many log files, line by line, through rotation.

Normal path: one inotify instance (``runtime.local.inotify``), its fd registered with ``loop.add_reader``;
each watched file's *directory* is watched, so a file that does not exist yet, or is replaced, is still
followed. Fallback, only where inotify is unavailable (no libc symbol, ``ENOSYS``, instance or watch
limits reached): a 250 ms stat poll of the affected paths, on a loop timer.

Rotation: when a file shrinks (copy-truncate), the bytes between our offset and the copy's end are read
from ``path.1`` before following the truncated file from 0, so no complete line is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from deploy_code.runtime.local.inotify import IN_Q_OVERFLOW, Inotify

__all__ = ["LineCallback", "LogFollower"]

log = logging.getLogger(__name__)

LineCallback = Callable[[str], None]
_POLL_INTERVAL_S = 0.25  # fallback only: how often polled paths are stat'ed
_READ_CHUNK = 65536  # bytes per read()
_MAX_READ_PER_DRAIN = 2**20  # one drain reads at most this much, then yields to the loop and continues
# After a failed rotation (disk full), the next try waits this long: each try copies up to the whole file,
# and a writer on a nearly full disk would otherwise trigger one copy per line it manages to write.
_ROTATE_RETRY_S = 5.0


@dataclass(slots=True)
class _Watch:
    path: str
    callback: LineCallback | None  # None: rotate-only (no reading)
    rotate: Callable[[], bool] | None
    offset: int
    mtime_ns: int
    # Partial-line buffer: below max_line_bytes between drains (longer lines are split), so bounded.
    buf: bytearray = field(default_factory=bytearray)
    wd: int | None = None  # inotify directory watch; None when this path is polled
    rotate_failed_at: float | None = None  # loop time of the last failed rotation; None once one works
    rotate_error: str | None = None  # why the last rotation failed (e.g. ENOSPC); None once one works


class LogFollower:
    """Follows log files and calls back with each new complete line.

    Args:
        max_line_bytes: longest line delivered whole; longer lines are delivered in pieces of this size.
            It also bounds each file's partial-line buffer.
        use_inotify: False forces the polling fallback (tests; filesystems where inotify sees nothing,
            such as some network mounts).
    """

    def __init__(self, *, max_line_bytes: int = 16384, use_inotify: bool = True) -> None:
        if max_line_bytes <= 0:
            raise ValueError("max_line_bytes must be positive")
        self._max_line = max_line_bytes
        # One entry per watch() not yet unwatch()ed: bounded by the caller (one per live replica).
        self._watches: dict[str, _Watch] = {}
        # inotify directory watches: wd -> (directory, number of watched paths in it). Bounded as above.
        self._dirs: dict[int, tuple[str, int]] = {}
        self._inotify: Inotify | None = Inotify.create() if use_inotify else None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader_added = False
        self._poll_timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def uses_inotify(self) -> bool:
        """False when this follower fell back to polling for every path."""
        return self._inotify is not None

    def __len__(self) -> int:
        return len(self._watches)

    def failing(self) -> dict[str, str]:
        """Log files whose last rotation failed, with why (bounded by the files watched)."""
        return {p: w.rotate_error for p, w in self._watches.items() if w.rotate_error is not None}

    def watch(
        self, path: str, callback: LineCallback | None, *, rotate: Callable[[], bool] | None = None
    ) -> None:
        """Follow ``path`` from its current end (from the start of a line still being written there,
        so that line is delivered whole once complete). Must be called on the loop.

        Args:
            path: the file; it need not exist yet, but its directory must.
            callback: gets each new complete line, without the newline, on the loop. None follows the
                file for ``rotate`` only, without reading it.
            rotate: called after new data was seen, e.g. ``LogFile(path, ...).maybe_rotate``; returns
                True when it rotated.
        """
        if self._closed:
            raise RuntimeError("LogFollower is closed")
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        path = os.path.abspath(path)
        self.unwatch(path)
        try:
            st = os.stat(path)
            offset, mtime = _line_start(path, st.st_size), st.st_mtime_ns
        except FileNotFoundError:
            offset, mtime = 0, 0
        w = _Watch(path, callback, rotate, offset, mtime)
        self._watches[path] = w
        if self._inotify is not None:
            directory = os.path.dirname(path)
            try:
                w.wd = self._inotify.add_dir(directory)
            except OSError as exc:
                log.warning("inotify watch on %s failed (%s); polling %s", directory, exc.strerror, path)
            else:
                _, refs = self._dirs.get(w.wd, (directory, 0))
                self._dirs[w.wd] = (directory, refs + 1)
                if not self._reader_added:
                    loop.add_reader(self._inotify.fd, self._on_inotify)
                    self._reader_added = True
        if w.wd is None and self._poll_timer is None:
            self._poll_timer = loop.call_later(_POLL_INTERVAL_S, self._poll)

    def unwatch(self, path: str) -> None:
        """Stop following ``path`` (a partial last line is dropped). Idempotent."""
        w = self._watches.pop(os.path.abspath(path), None)
        if w is None or w.wd is None:
            return
        directory, refs = self._dirs[w.wd]
        if refs > 1:
            self._dirs[w.wd] = (directory, refs - 1)
            return
        del self._dirs[w.wd]
        if self._inotify is not None:
            self._inotify.remove(w.wd)

    async def aclose(self) -> None:
        """Stop following everything and close the inotify fd. Idempotent."""
        self._closed = True
        self._watches.clear()
        self._dirs.clear()
        if self._poll_timer is not None:
            self._poll_timer.cancel()
            self._poll_timer = None
        if self._inotify is not None:
            if self._reader_added and self._loop is not None:
                self._loop.remove_reader(self._inotify.fd)
            self._inotify.close()
            self._inotify = None

    def _on_inotify(self) -> None:
        if self._inotify is None:
            return
        touched: set[str] = set()
        for wd, mask, name in self._inotify.read_events():
            if mask & IN_Q_OVERFLOW:
                touched.update(self._watches)  # events were lost: look at everything
                continue
            entry = self._dirs.get(wd)
            if entry is not None and name:
                touched.add(os.path.join(entry[0], name))
        for path in touched:
            self._drain(path)

    def _poll(self) -> None:
        self._poll_timer = None
        polled = [p for p, w in self._watches.items() if w.wd is None]
        for path in polled:
            self._drain(path)
        if polled and self._loop is not None and not self._closed:
            self._poll_timer = self._loop.call_later(_POLL_INTERVAL_S, self._poll)

    def _drain(self, path: str) -> None:
        w = self._watches.get(path)
        if w is None:
            return
        try:
            st = os.stat(path)
        except FileNotFoundError:
            w.offset = 0  # removed; follow it again from the start once recreated
            return
        if st.st_size < w.offset:
            self._salvage_rotated(w)
            w.offset = 0
        w.mtime_ns = st.st_mtime_ns
        more = False
        if w.callback is None:
            w.offset = st.st_size
        elif st.st_size > w.offset:
            more = self._read(w, path, st.st_size)
        if w.rotate is not None and self._rotate(w):
            # Deliver what the copy holds beyond our offset, then follow the truncated file from 0 (do
            # not wait to see it shrink: by the next drain the child may have refilled it past offset).
            self._salvage_rotated(w)
            w.offset = 0
            more = True
        if more and self._loop is not None:
            self._loop.call_soon(self._drain, path)

    def _rotate(self, w: _Watch) -> bool:
        assert w.rotate is not None
        now = self._loop.time() if self._loop is not None else 0.0
        if w.rotate_failed_at is not None and now - w.rotate_failed_at < _ROTATE_RETRY_S:
            return False
        try:
            rotated = w.rotate()
        except OSError as exc:
            if w.rotate_failed_at is None:  # once per failing streak, not once per try
                log.warning("rotating %s failed (%s); retrying every %gs", w.path, exc, _ROTATE_RETRY_S)
            w.rotate_failed_at = now
            w.rotate_error = str(exc)
            return False
        if w.rotate_failed_at is not None:
            log.warning("rotating %s works again", w.path)
            w.rotate_failed_at = None
            w.rotate_error = None
        return rotated

    def _salvage_rotated(self, w: _Watch) -> None:
        """The file shrank: if ``path.1`` is the copy just made, deliver its part we had not read."""
        if w.callback is None:
            return
        backup = w.path + ".1"
        try:
            st = os.stat(backup)
        except FileNotFoundError:
            return
        if st.st_size >= w.offset and st.st_mtime_ns >= w.mtime_ns:
            self._read(w, backup, st.st_size, limit=None)

    def _read(self, w: _Watch, path: str, end: int, limit: int | None = _MAX_READ_PER_DRAIN) -> bool:
        """Read ``path`` from ``w.offset`` towards ``end``; True when stopped early at ``limit``."""
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed in the with-block below
        except FileNotFoundError:
            return False
        with f:
            f.seek(w.offset)
            budget = end - w.offset if limit is None else min(end - w.offset, limit)
            while budget > 0:
                chunk = f.read(min(_READ_CHUNK, budget))
                if not chunk:
                    break
                w.offset += len(chunk)
                budget -= len(chunk)
                self._feed(w, chunk)
        return w.offset < end

    def _feed(self, w: _Watch, data: bytes) -> None:
        buf = w.buf
        buf += data
        start = 0
        while (nl := buf.find(b"\n", start)) >= 0:
            self._emit(w, bytes(buf[start:nl]))
            start = nl + 1
        del buf[:start]
        while len(buf) >= self._max_line:  # keep the partial line under the bound: split it
            self._emit(w, bytes(buf[: self._max_line]))
            del buf[: self._max_line]

    def _emit(self, w: _Watch, line: bytes) -> None:
        if w.callback is None:
            return
        for i in range(0, max(len(line), 1), self._max_line):
            try:
                w.callback(line[i : i + self._max_line].decode("utf-8", "replace"))
            except Exception:
                log.exception("log line callback for %s failed", w.path)


def _line_start(path: str, size: int, look: int = 64 * 1024) -> int:
    """``size``, or the offset just after the last newline when the file ends mid-line (looking back
    at most ``look`` bytes; a longer unfinished line is followed from ``size``)."""
    if size == 0:
        return 0
    try:
        with open(path, "rb") as f:
            start = max(0, size - look)
            f.seek(start)
            tail = f.read(size - start)
    except OSError:
        return size
    if tail.endswith(b"\n"):
        return size
    cut = tail.rfind(b"\n")
    if cut >= 0:
        return start + cut + 1
    return 0 if start == 0 else size
