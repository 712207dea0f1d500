"""exec checks: real subprocesses, argv verbatim, env/cwd from the target, killed on timeout."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from deploy_code.config.model import ProbeSpec
from deploy_code.health import Check, CheckTarget, HttpClientFactory, make_check


def exec_check(argv: list[str], tmp_path: Path, timeout: float = 2.0, **env: str) -> Check:
    spec = ProbeSpec.model_validate({"exec": {"command": argv}, "timeout": timeout})
    target = CheckTarget(
        host="127.0.0.1",
        ports={},
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
        cwd=str(tmp_path),
    )
    return make_check(spec, target, http=HttpClientFactory())


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


async def wait_gone(pid: int) -> bool:
    for _ in range(200):
        if not alive(pid):
            return True
        await asyncio.sleep(0.01)
    return False


def pid_in(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return int(text) if text else None


async def read_pid(path: Path) -> int:
    for _ in range(500):
        pid = pid_in(path)
        if pid is not None:
            return pid
        await asyncio.sleep(0.01)
    raise AssertionError(f"no pid written to {path}")


async def test_true_passes(tmp_path: Path) -> None:
    result = await exec_check(["true"], tmp_path)()
    assert result.ok
    assert result.message == "exec true: exit 0"


async def test_false_fails(tmp_path: Path) -> None:
    result = await exec_check(["false"], tmp_path)()
    assert not result.ok
    assert result.message == "exec false: exit 1"


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    # The shell starts a background sleep (a grandchild) and records its pid; both must die.
    script = "sleep 5 & echo $! > child.pid; wait"
    check = exec_check(["sh", "-c", script], tmp_path, timeout=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    result = await check()
    assert loop.time() - start < 2
    assert not result.ok
    assert "timeout" in result.message
    assert await wait_gone(await read_pid(tmp_path / "child.pid"))


async def test_sleep_with_short_timeout_is_killed(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    result = await exec_check(["sleep", "5"], tmp_path, timeout=0.2)()
    assert loop.time() - start < 2
    assert result.message == "exec sleep: timeout after 0.2s (killed)"


async def test_cancellation_kills_the_command(tmp_path: Path) -> None:
    check = exec_check(["sh", "-c", "echo $$ > self.pid; exec sleep 5"], tmp_path, timeout=10)
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(check())
        pid = await read_pid(tmp_path / "self.pid")
        task.cancel()
    assert task.cancelled()
    assert await wait_gone(pid)


async def test_env_and_cwd_come_from_the_target(tmp_path: Path) -> None:
    script = 'test "$PROBE_VAR" = yes && test "$(pwd -P)" = "$(cd "$EXPECTED" && pwd -P)"'
    check = exec_check(["sh", "-c", script], tmp_path, PROBE_VAR="yes", EXPECTED=str(tmp_path))
    assert (await check()).ok


async def test_argv_is_passed_verbatim_without_a_shell(tmp_path: Path) -> None:
    tricky = "a b; rm -rf $HOME `false`"
    check = exec_check(["sh", "-c", 'test "$1" = "$2"', "sh", tricky, tricky], tmp_path)
    assert (await check()).ok


async def test_missing_command_fails_without_raising(tmp_path: Path) -> None:
    result = await exec_check(["/nonexistent/probe-binary"], tmp_path)()
    assert not result.ok
    assert result.message.startswith("exec /nonexistent/probe-binary: cannot run: ")


async def test_killed_by_signal_is_described(tmp_path: Path) -> None:
    result = await exec_check(["sh", "-c", "kill -TERM $$"], tmp_path)()
    assert not result.ok
    assert result.message == "exec sh: killed by SIGTERM"
