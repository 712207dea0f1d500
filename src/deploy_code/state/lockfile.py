"""One orchestrator per state directory: an exclusive ``flock`` that the kernel drops when we die."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from deploy_code.errors import ErrorCode, SupervisionError

__all__ = ["StateDirLock", "prepare_state_dir"]

LOCK_NAME = "orchestrator.lock"


def prepare_state_dir(path: Path) -> Path:
    """Create the state directory with mode 0700 (or tighten an existing one).

    Raises:
        SupervisionError: S006 when it cannot be created or is not a directory.
    """
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path, 0o700)
    except OSError as exc:
        raise SupervisionError(
            f"state directory {path} is unusable: {exc.strerror or exc}",
            code=ErrorCode.S006,
            hint="set settings.state_dir to a writable directory",
        ) from None
    return path


class StateDirLock:
    """Held for the orchestrator's lifetime; a second ``up`` on the same file gets S003.

    Args:
        state_dir: the deployment's state directory.
    """

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise S003 naming the running orchestrator's pid."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise SupervisionError(
                f"an orchestrator is already running for this deployment (pid {holder})",
                code=ErrorCode.S003,
                hint="use `deploy-code status`, or `deploy-code down` first",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def held_by(self) -> int | None:
        """The pid of a live holder, or None when nobody holds the lock."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                text = os.pread(fd, 32, 0).decode(errors="replace").strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None
