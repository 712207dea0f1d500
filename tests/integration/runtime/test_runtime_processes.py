"""LocalBackend with real processes: logs, exit codes, signals, process groups, stop, start errors."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from pathlib import Path

import pytest
from tests.integration.runtime.runtime_helpers import (
    PY,
    alive,
    kill_and_reap,
    make_spec,
    poll_until,
    read_text,
)

from deploy_code.errors import ErrorCode, StartError
from deploy_code.runtime import LocalBackend

pytestmark = pytest.mark.timeout(60)


async def wait_for_text(path: str, text: str, limit: float = 5.0) -> str:
    """Bounded wait until ``path`` contains ``text`` (the child writes it directly, not through us)."""
    await poll_until(lambda: text in read_text(path), limit)
    return read_text(path)


async def test_stdout_and_stderr_go_to_the_log_file(backend: LocalBackend, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "sh", "-c", 'echo out; echo err >&2; echo "$GREETING in $(pwd)"')
    spec = dataclasses.replace(spec, env={**spec.env, "GREETING": "hi"})
    handle = await backend.start(spec)
    async with asyncio.timeout(5):
        assert await handle.wait() == 0
    handle.close()
    assert read_text(spec.log_path).splitlines() == ["out", "err", f"hi in {tmp_path}"]
    assert oct(os.stat(spec.log_path).st_mode & 0o777) == oct(0o600)


async def test_log_is_appended_across_restarts(backend: LocalBackend, tmp_path: Path) -> None:
    for word in ("first", "second"):
        handle = await backend.start(make_spec(tmp_path, "echo", word))
        async with asyncio.timeout(5):
            await handle.wait()
        handle.close()
    assert (tmp_path / "svc.0.log").read_text() == "first\nsecond\n"


async def test_exit_code_and_identity(backend: LocalBackend, tmp_path: Path) -> None:
    handle = await backend.start(make_spec(tmp_path, "sh", "-c", "exit 7"))
    assert handle.adopted is False
    assert handle.identity.pgid == handle.identity.pid  # own process group
    assert handle.identity.start_time > 0
    async with asyncio.timeout(5):
        assert await handle.wait() == 7
    assert handle.exited and handle.returncode == 7
    assert await handle.wait() == 7  # again: returns at once
    handle.close()
    handle.close()  # idempotent


async def test_killed_by_signal_gives_negative_code(backend: LocalBackend, tmp_path: Path) -> None:
    handle = await backend.start(make_spec(tmp_path, "sleep", "30"))
    assert handle.signal_group(signal.SIGKILL) is True
    async with asyncio.timeout(5):
        assert await handle.wait() == -signal.SIGKILL
    assert handle.signal_group(signal.SIGTERM) is False  # already gone
    handle.close()


async def test_environment_is_exactly_the_spec(backend: LocalBackend, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, PY, "-c", "import os; print(sorted(k for k in os.environ if k != 'LC_CTYPE'))")
    handle = await backend.start(spec)
    async with asyncio.timeout(10):
        assert await handle.wait() == 0
    handle.close()
    assert read_text(spec.log_path).strip() == "['LANG', 'PATH']"


async def test_group_signal_reaches_grandchild(backend: LocalBackend, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "sh", "-c", "sleep 100 & echo $!; wait")
    handle = await backend.start(spec)
    text = await wait_for_text(spec.log_path, "\n")
    grandchild = int(text.split()[0])
    assert alive(grandchild)
    assert os.getpgid(grandchild) == handle.identity.pgid
    async with asyncio.timeout(10):
        rc = await handle.stop(signal.SIGTERM, timeout=5)
    assert rc == -signal.SIGTERM
    await poll_until(lambda: not alive(grandchild))  # re-parented to init: not ours to wait for
    handle.close()


async def test_stop_escalates_to_sigkill(backend: LocalBackend, tmp_path: Path) -> None:
    code = (
        "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('r',flush=True); time.sleep(60)"
    )
    spec = make_spec(tmp_path, PY, "-c", code)
    handle = await backend.start(spec)
    await wait_for_text(spec.log_path, "r\n", limit=10)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    async with asyncio.timeout(10):
        rc = await handle.stop(signal.SIGTERM, timeout=0.5)
    assert rc == -signal.SIGKILL
    assert 0.5 <= loop.time() - t0 < 5
    async with asyncio.timeout(5):  # idempotent, and returns at once once exited
        assert await handle.stop(signal.SIGTERM, timeout=5) == -signal.SIGKILL
    handle.close()


async def test_stop_of_exited_process_returns_its_code(backend: LocalBackend, tmp_path: Path) -> None:
    handle = await backend.start(make_spec(tmp_path, "true"))
    async with asyncio.timeout(5):
        await handle.wait()
        assert await handle.stop(signal.SIGTERM, timeout=1) == 0
    handle.close()


async def test_concurrent_starts(backend: LocalBackend, tmp_path: Path) -> None:
    specs = [make_spec(tmp_path, "sh", "-c", f"exit {i}", name=f"svc.{i}") for i in range(40)]
    handles = await asyncio.gather(*(backend.start(s) for s in specs))
    async with asyncio.timeout(20):
        codes = await asyncio.gather(*(h.wait() for h in handles))
    assert codes == list(range(40))
    for h in handles:
        h.close()
    assert backend._table_sizes() == dict.fromkeys(backend._table_sizes(), 0)


def _assert_e005(exc: StartError, *needles: str) -> None:
    assert exc.code is ErrorCode.E005
    for needle in needles:
        assert needle in exc.message, exc.message
    assert "Traceback" not in str(exc)


async def test_missing_executable_is_e005(backend: LocalBackend, tmp_path: Path) -> None:
    with pytest.raises(StartError) as info:
        await backend.start(make_spec(tmp_path, "definitely-not-a-program-xyz", "--flag"))
    _assert_e005(info.value, "svc.0", "executable", "definitely-not-a-program-xyz", "not found")
    with pytest.raises(StartError) as info:
        await backend.start(make_spec(tmp_path, str(tmp_path / "nope")))
    _assert_e005(info.value, "not found")


async def test_missing_cwd_is_e005(backend: LocalBackend, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "true")
    spec = dataclasses.replace(spec, cwd=str(tmp_path / "missing"))
    with pytest.raises(StartError) as info:
        await backend.start(spec)
    _assert_e005(info.value, "working directory", "missing", "does not exist")


async def test_not_executable_is_e005(backend: LocalBackend, tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    script.chmod(0o644)
    with pytest.raises(StartError) as info:
        await backend.start(make_spec(tmp_path, str(script)))
    _assert_e005(info.value, "permission denied", "script.sh")


async def test_no_shebang_is_e005(backend: LocalBackend, tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x00\x01\x02garbage")
    blob.chmod(0o755)
    with pytest.raises(StartError) as info:
        await backend.start(make_spec(tmp_path, str(blob)))
    _assert_e005(info.value, "not an executable format")


async def test_unwritable_log_dir_and_empty_argv_are_e005(backend: LocalBackend, tmp_path: Path) -> None:
    spec = make_spec(tmp_path, "true")
    bad_log = dataclasses.replace(spec, log_path=str(tmp_path / "no" / "dir" / "x.log"))
    with pytest.raises(StartError) as info:
        await backend.start(bad_log)
    _assert_e005(info.value, "cannot open log file")
    with pytest.raises(StartError) as info:
        await backend.start(make_spec(tmp_path))
    _assert_e005(info.value, "empty command")
    assert backend._table_sizes()["handles"] == 0


async def test_close_while_running_detaches_and_wakes_waiters(backend: LocalBackend, tmp_path: Path) -> None:
    handle = await backend.start(make_spec(tmp_path, "sleep", "60"))

    async def close_soon() -> None:
        await asyncio.sleep(0.05)
        handle.close()

    async with asyncio.timeout(5):
        waited, _ = await asyncio.gather(handle.wait(), close_soon(), return_exceptions=True)
    assert isinstance(waited, RuntimeError) and "closed before it exited" in str(waited)
    assert alive(handle.identity.pid)  # detached, not killed
    assert backend._table_sizes()["handles"] == 0
    kill_and_reap(handle.identity.pid, handle.identity.pgid)
