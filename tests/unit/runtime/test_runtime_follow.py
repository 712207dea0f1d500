"""LogFollower on real files written by the test: lines, bounds, rotation, unwatch, poll fallback."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from deploy_code.runtime import LogFile, LogFollower

pytestmark = pytest.mark.timeout(30)


class Collector:
    """Collects lines; ``wait_for(n)`` returns once ``n`` lines arrived (bounded by a timeout)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._changed = asyncio.Event()

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        self._changed.set()

    async def wait_for(self, n: int, limit: float = 5.0) -> list[str]:
        async with asyncio.timeout(limit):
            while len(self.lines) < n:
                self._changed.clear()
                await self._changed.wait()
        return self.lines


class Appender:
    """Writes to a file the way a child does: one O_APPEND fd."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)

    def write(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def close(self) -> None:
        os.close(self.fd)


@pytest.fixture(params=[True, False], ids=["inotify", "poll"])
async def follower(request: pytest.FixtureRequest) -> AsyncIterator[LogFollower]:
    f = LogFollower(max_line_bytes=64, use_inotify=request.param)
    yield f
    await f.aclose()


async def test_only_lines_appended_after_watch(follower: LogFollower, tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    out = Appender(log)
    try:
        out.write("before\n")
        got = Collector()
        follower.watch(str(log), got)
        out.write("one\ntw")
        await got.wait_for(1)
        out.write("o\nthree\n")
        assert await got.wait_for(3) == ["one", "two", "three"]
    finally:
        out.close()


async def test_file_created_after_watch(follower: LogFollower, tmp_path: Path) -> None:
    log = tmp_path / "later.log"
    got = Collector()
    follower.watch(str(log), got)
    out = Appender(log)
    try:
        out.write("hello\n")
        assert await got.wait_for(1) == ["hello"]
    finally:
        out.close()


async def test_long_lines_are_split_and_buffer_stays_bounded(follower: LogFollower, tmp_path: Path) -> None:
    log = tmp_path / "long.log"
    got = Collector()
    follower.watch(str(log), got)
    out = Appender(log)
    try:
        out.write("x" * 150)  # no newline yet: 2 full pieces of 64 are delivered, 22 bytes stay buffered
        await got.wait_for(2)
        (watch,) = follower._watches.values()
        assert len(watch.buf) < 64
        out.write("\nshort\n")
        assert await got.wait_for(4) == ["x" * 64, "x" * 64, "x" * 22, "short"]
    finally:
        out.close()


async def test_follows_through_own_rotation_without_losing_lines(
    follower: LogFollower, tmp_path: Path
) -> None:
    log = tmp_path / "rot.log"
    lf = LogFile(str(log), max_bytes=200, backups=2)
    got = Collector()
    follower.watch(str(log), got, rotate=lf.maybe_rotate)
    out = Appender(log)
    try:
        expected = [f"line {i:04d}" for i in range(100)]
        for i, line in enumerate(expected):
            out.write(line + "\n")
            if i % 7 == 0:
                await asyncio.sleep(0.01)
        assert await got.wait_for(100) == expected
        assert (tmp_path / "rot.log.1").exists()
        assert log.stat().st_size < 200 + 100
    finally:
        out.close()


async def test_follows_through_foreign_copy_truncate(follower: LogFollower, tmp_path: Path) -> None:
    log = tmp_path / "foreign.log"
    got = Collector()
    follower.watch(str(log), got)
    out = Appender(log)
    try:
        out.write("a\nb\n")
        await got.wait_for(2)
        out.write("c\n")  # maybe not yet read when the rotation happens: salvaged from .1
        assert LogFile(str(log), max_bytes=1, backups=1).maybe_rotate()
        out.write("d\n")
        assert await got.wait_for(4) == ["a", "b", "c", "d"]
    finally:
        out.close()


async def test_unwatch_stops_delivery_and_removes_watch(follower: LogFollower, tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    got_a, got_b = Collector(), Collector()
    follower.watch(str(a), got_a)
    follower.watch(str(b), got_b)
    assert len(follower) == 2
    follower.unwatch(str(a))
    follower.unwatch(str(a))  # idempotent
    out_a, out_b = Appender(a), Appender(b)
    try:
        out_a.write("ignored\n")
        out_b.write("seen\n")
        assert await got_b.wait_for(1) == ["seen"]
        await asyncio.sleep(0.3)
        assert got_a.lines == []
    finally:
        out_a.close()
        out_b.close()
    follower.unwatch(str(b))
    assert len(follower) == 0
    assert follower._dirs == {}


async def test_failing_callback_does_not_stop_others(
    follower: LogFollower, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "c.log"

    def boom(line: str) -> None:
        raise ValueError(line)

    follower.watch(str(log), boom)
    got = Collector()
    other = tmp_path / "d.log"
    follower.watch(str(other), got)
    out, out2 = Appender(log), Appender(other)
    try:
        out.write("x\n")
        out2.write("y\n")
        assert await got.wait_for(1) == ["y"]
    finally:
        out.close()
        out2.close()


async def test_closed_follower_refuses_watches(tmp_path: Path) -> None:
    f = LogFollower()
    await f.aclose()
    await f.aclose()
    with pytest.raises(RuntimeError):
        f.watch(str(tmp_path / "x.log"), print)


async def test_a_line_being_written_when_watched_is_delivered_whole(
    follower: LogFollower, tmp_path: Path
) -> None:
    log = tmp_path / "a.log"
    out = Appender(log)
    try:
        out.write("done\ntick ")  # `tick 3` is half written when someone starts following
        assert LogFile(str(log), 1 << 20, 1).tail(5, partial=False) == ["done"]
        assert LogFile(str(log), 1 << 20, 1).tail(5) == ["done", "tick "]
        got = Collector()
        follower.watch(str(log), got)
        out.write("3\ntick 4\n")
        assert await got.wait_for(2) == ["tick 3", "tick 4"]
    finally:
        out.close()
