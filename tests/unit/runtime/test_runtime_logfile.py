"""LogFile: copy-truncate rotation and bounded tail, on real files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deploy_code.runtime import LogFile


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def test_no_rotation_below_max_bytes(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    _write(log, "a\n")
    assert LogFile(str(log), max_bytes=100, backups=3).maybe_rotate() is False
    assert log.read_text() == "a\n"
    assert not (tmp_path / "svc.log.1").exists()


def test_missing_file_does_not_rotate(tmp_path: Path) -> None:
    assert LogFile(str(tmp_path / "nope.log"), max_bytes=1, backups=1).maybe_rotate() is False


def test_rotation_shifts_backups_and_keeps_only_backups(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    lf = LogFile(str(log), max_bytes=4, backups=2)
    for gen in ("one\n", "two\n", "three\n"):
        _write(log, gen)
        assert lf.maybe_rotate() is True
        assert log.stat().st_size == 0  # truncated in place
    assert (tmp_path / "svc.log.1").read_text() == "three\n"
    assert (tmp_path / "svc.log.2").read_text() == "two\n"
    assert not (tmp_path / "svc.log.3").exists()
    assert oct((tmp_path / "svc.log.1").stat().st_mode & 0o777) == oct(0o600)


def test_rotation_keeps_the_inode_so_an_append_fd_keeps_writing(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        inode = log.stat().st_ino
        os.write(fd, b"x" * 10 + b"\n")
        assert LogFile(str(log), max_bytes=5, backups=1).maybe_rotate()
        os.write(fd, b"after\n")  # O_APPEND: lands at offset 0 of the truncated file, no hole
    finally:
        os.close(fd)
    assert log.stat().st_ino == inode
    assert log.read_bytes() == b"after\n"


def test_zero_backups_just_truncates(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    _write(log, "0123456789\n")
    assert LogFile(str(log), max_bytes=5, backups=0).maybe_rotate()
    assert log.read_text() == ""
    assert not (tmp_path / "svc.log.1").exists()


def test_invalid_bounds_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        LogFile(str(tmp_path / "x"), max_bytes=0, backups=1)
    with pytest.raises(ValueError):
        LogFile(str(tmp_path / "x"), max_bytes=1, backups=-1)


def test_tail_reads_last_lines_including_partial_last(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    _write(log, "".join(f"line {i}\n" for i in range(10)) + "partial")
    lf = LogFile(str(log), max_bytes=10**6, backups=1)
    assert lf.tail(3) == ["line 8", "line 9", "partial"]
    assert lf.tail(0) == []


def test_tail_of_missing_and_empty_files(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    lf = LogFile(str(log), max_bytes=10, backups=1)
    assert lf.tail(5) == []
    log.write_text("")
    assert lf.tail(5) == []


def test_tail_looks_into_previous_generation(tmp_path: Path) -> None:
    log = tmp_path / "svc.log"
    lf = LogFile(str(log), max_bytes=20, backups=2)
    _write(log, "".join(f"old {i}\n" for i in range(5)))
    assert lf.maybe_rotate()
    _write(log, "new 0\nnew 1\n")
    assert lf.tail(4) == ["old 3", "old 4", "new 0", "new 1"]
    assert lf.tail(100) == [f"old {i}" for i in range(5)] + ["new 0", "new 1"]


def test_tail_reads_only_the_end_of_a_large_file(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    line = "y" * 99 + "\n"
    with open(log, "w") as f:
        for _ in range(100_000):  # 10 MB
            f.write(line)
        f.write("last\n")
    lf = LogFile(str(log), max_bytes=10**9, backups=0)
    assert lf.tail(2) == ["y" * 99, "last"]
    # n larger than what the 4 MiB read bound holds: returns the lines within the bound only.
    many = lf.tail(10**6)
    assert 40_000 < len(many) < 45_000
    assert many[-1] == "last"


@settings(max_examples=60, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="ab\u00e9 ", max_size=20), max_size=40),
    n=st.integers(min_value=1, max_value=50),
    trailing_newline=st.booleans(),
)
def test_tail_matches_splitlines(
    tmp_path_factory: pytest.TempPathFactory, lines: list[str], n: int, trailing_newline: bool
) -> None:
    path = tmp_path_factory.mktemp("tail") / "f.log"
    text = "\n".join(lines) + ("\n" if trailing_newline and lines else "")
    path.write_bytes(text.encode())
    expected = text.split("\n")
    if text.endswith("\n"):
        expected = expected[:-1]
    if text == "":
        expected = []
    assert LogFile(str(path), max_bytes=10**6, backups=0).tail(n) == expected[-n:]
