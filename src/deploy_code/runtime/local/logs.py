"""Per-replica log files: size-bounded by copy-truncate rotation, and a bounded-memory ``tail``.

The child writes its stdout/stderr straight into the file (opened ``O_APPEND``), so the orchestrator is
not in the data path and the child does not depend on it. Rotation is therefore copy-truncate, as
logrotate's ``copytruncate``: copy ``path`` to ``path.1`` and truncate ``path``; the child's next append
lands at offset 0. Bytes written between the copy and the truncate are lost; the window is one copy of
``max_bytes`` at most, once per ``max_bytes`` of output.
"""

from __future__ import annotations

import contextlib
import os
import shutil

__all__ = ["LogFile"]

_TAIL_BLOCK = 8192  # bytes read per backwards step of tail()
_TAIL_MAX_BYTES = 4 * 2**20  # tail() never reads more than this much of one file, whatever n is


class LogFile:
    """One replica's log path, kept under ``max_bytes`` plus ``backups`` rotated copies.

    Args:
        path: the log file the child appends to.
        max_bytes: size at which :meth:`maybe_rotate` rotates.
        backups: rotated copies kept (``path.1`` newest ... ``path.<backups>`` oldest); 0 keeps none.
    """

    def __init__(self, path: str, max_bytes: int, backups: int) -> None:
        if max_bytes <= 0 or backups < 0:
            raise ValueError("max_bytes must be positive and backups not negative")
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups

    def backup_path(self, index: int) -> str:
        """The path of the ``index``-th rotated copy (1 is the newest)."""
        return f"{self.path}.{index}"

    def maybe_rotate(self) -> bool:
        """Rotate when the file has reached ``max_bytes``.

        Shifts ``path.k`` to ``path.k+1`` (dropping the oldest), copies ``path`` to ``path.1`` and
        truncates ``path`` in place (copy-truncate: the child keeps its open ``O_APPEND`` fd).

        Returns:
            True when it rotated.

        Raises:
            OSError: the copy or the truncation failed (e.g. the disk is full); a partial copy is removed.
        """
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return False
        if size < self.max_bytes:
            return False
        if self.backups > 0:
            for k in range(self.backups - 1, 0, -1):
                src = self.backup_path(k)
                if os.path.exists(src):
                    os.replace(src, self.backup_path(k + 1))
            tmp = self.backup_path(1) + ".tmp"
            try:
                _copy_private(self.path, tmp)
            except OSError:
                # Disk full (ENOSPC, EFBIG, EDQUOT) or the like: the partial copy would only hold the space
                # that is lacking. The file is left as it is; the caller may retry later.
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            os.replace(tmp, self.backup_path(1))
        os.truncate(self.path, 0)
        return True

    def tail(self, n: int, *, partial: bool = True) -> list[str]:
        """The last ``n`` lines, oldest first, looking into ``path.1`` when ``path`` has fewer.

        Reads only the end of each file (seeking backwards), at most 4 MiB per file. A final line
        without a newline (still being written) is included.

        Args:
            n: how many lines.
            partial: include a final line still being written (no newline yet); a caller that
                follows the file next passes False: the follower delivers that line once complete.

        Returns:
            Up to ``n`` lines without their newlines.
        """
        if n <= 0:
            return []
        lines = _tail_file(self.path, n, partial=partial)
        if len(lines) < n and self.backups > 0:
            lines = _tail_file(self.backup_path(1), n - len(lines)) + lines
        return lines


def _copy_private(src: str, dst: str) -> None:
    """Copy ``src`` to ``dst`` in chunks (bounded memory); ``dst`` is 0600 from its creation (logs may hold
    secrets the service prints)."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    with open(fd, "wb") as out, open(src, "rb") as inp:
        os.fchmod(fd, 0o600)  # a leftover dst keeps its old mode through O_TRUNC
        shutil.copyfileobj(inp, out)


def _tail_file(path: str, n: int, *, partial: bool = True) -> list[str]:
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; the with-block would hide the early return
    except FileNotFoundError:
        return []
    with f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return []
        pos = end
        data = b""
        # n lines need n newlines before them (or the start of the file), plus a possible trailing one.
        while pos > 0 and data.count(b"\n") <= n and end - pos < _TAIL_MAX_BYTES:
            step = min(_TAIL_BLOCK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
    if data.endswith(b"\n"):
        data = data[:-1]
    elif not partial:  # drop the line still being written: a follower delivers it once complete
        data = data[: data.rfind(b"\n") + 1][:-1] if b"\n" in data else b""
        if not data:
            return []
    parts = data.split(b"\n")
    if pos > 0:
        parts = parts[1:]  # the first piece starts mid-line
    return [p.decode("utf-8", "replace") for p in parts[-n:]]
