"""``limits``: detection from mountinfo, and the cgroup v2 layout on a fake cgroupfs.

The real v1 path runs in ``tests/integration/runtime/test_limits.py``; v2 needs a machine with the unified
hierarchy, so its file layout is checked here on a directory tree that behaves like cgroupfs: ``mkdir``
fills a new cgroup with its interface files, and ``rmdir`` removes one only while no process is in it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from deploy_code.runtime import OomReport, ProcessSpec, ResourceLimits
from deploy_code.runtime.local import limits
from deploy_code.runtime.local.limits import CGROUP_V1, CGROUP_V2, NONE, RLIMIT, LimitEnforcer, detect

HYBRID = """\
25 30 0:23 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
27 25 0:25 / /sys/fs/cgroup/cpu rw,nosuid shared:11 - cgroup cgroup rw,cpu
28 25 0:26 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory
29 25 0:27 /docker/abc /sys/fs/cgroup/pids rw,nosuid shared:13 - cgroup cgroup rw,pids
"""
OWN_HYBRID = "4:memory:/process_api/591a\n1:cpu:/\n0::/\n"
V2_FILES = {
    "cgroup.controllers": "cpu io memory pids",
    "cgroup.subtree_control": "",
    "cgroup.procs": "",
    "memory.max": "max",
    "memory.swap.max": "max",
    "memory.oom.group": "0",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n",
    "memory.peak": "0",
    "cpu.max": "max 100000",
}


def test_mountinfo_of_a_hybrid_machine() -> None:
    v2, v1 = limits._cgroup_mounts(HYBRID)
    assert v2 is not None and v2.mount == "/sys/fs/cgroup/unified"
    assert sorted(v1) == ["cpu", "memory"]
    assert v1["memory"].mount == "/sys/fs/cgroup/memory"
    own = limits._own_cgroups(OWN_HYBRID)
    assert own == {"memory": "/process_api/591a", "cpu": "/", "": "/"}
    assert v1["memory"].dir_of(own["memory"]) == "/sys/fs/cgroup/memory/process_api/591a"
    assert v1["cpu"].dir_of("/") == "/sys/fs/cgroup/cpu"
    nested = limits._Mount("/sys/fs/cgroup/pids", "/docker/abc")
    assert nested.dir_of("/docker/abc/deploy-code/p/w.0") == "/sys/fs/cgroup/pids/deploy-code/p/w.0"
    assert nested.dir_of("/elsewhere") is None
    assert limits._unescape(r"/mnt/with\040space") == "/mnt/with space"


def test_forced_and_fallback_methods() -> None:
    assert detect("none").method == NONE
    assert detect("rlimit").method == RLIMIT
    assert detect("", mountinfo="1 0 8:1 / / rw - ext4 /dev/sda1 rw\n", own="0::/\n").method == RLIMIT


def test_plan_says_what_each_method_enforces() -> None:
    both = ResourceLimits(memory_mb=64, cpu_cores=0.5)
    assert LimitEnforcer(CGROUP_V1).plan(both).to_dict() == {
        "method": CGROUP_V1,
        "memory_mb": 64,
        "cpu_cores": 0.5,
    }
    assert LimitEnforcer(RLIMIT).plan(both).to_dict() == {"method": RLIMIT, "memory_mb": 64, "cpu_cores": 0.0}
    assert LimitEnforcer(RLIMIT).plan(ResourceLimits(cpu_cores=1)).method == NONE  # not enforceable
    assert LimitEnforcer(CGROUP_V2).plan(ResourceLimits()).method == NONE  # nothing declared
    assert LimitEnforcer(NONE).plan(both).method == NONE


def test_oom_report_reads_like_the_reason() -> None:
    assert OomReport(1, 256.0, 255.93).describe() == "killed at 256 MiB limit (peak 255.9 MiB)"
    assert OomReport(2, 64.5, None).describe() == "killed at 64.5 MiB limit"


def test_names_are_safe_path_components() -> None:
    assert limits._safe("web.0") == "web.0"
    assert limits._safe("a/b c") == "a_b_c"
    assert limits._safe("..") == "_.."


@pytest.fixture
def fake_v2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cgroup2 'mount' at tmp_path/cg whose mkdir/rmdir behave like cgroupfs."""
    root = tmp_path / "cg"
    root.mkdir()
    for name, text in V2_FILES.items():
        (root / name).write_text(text)
    real_mkdir, real_rmdir = os.mkdir, os.rmdir

    def mkdir(path: str | os.PathLike[str], mode: int = 0o777, *, dir_fd: int | None = None) -> None:
        real_mkdir(path, mode)
        if str(path).startswith(str(root)):
            for name, text in V2_FILES.items():
                if name != "cgroup.controllers":
                    Path(path, name).write_text(text)

    def rmdir(path: str | os.PathLike[str], *, dir_fd: int | None = None) -> None:
        p = Path(path)
        if not str(p).startswith(str(root)):
            real_rmdir(path)
            return
        if not p.is_dir():
            raise FileNotFoundError(errno.ENOENT, "gone", str(p))
        if (p / "cgroup.procs").read_text().strip() or any(c.is_dir() for c in p.iterdir()):
            raise OSError(errno.EBUSY, "busy", str(p))
        for f in p.iterdir():
            f.unlink()  # the interface files go with the cgroup
        real_rmdir(p)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "rmdir", rmdir)
    return root


def _spec(tmp_path: Path, **lim: float) -> ProcessSpec:
    return ProcessSpec(
        "web.0",
        ("true",),
        {},
        str(tmp_path),
        str(tmp_path / "log"),
        limits=ResourceLimits(**lim),
        project="p",
    )


def test_v2_layout_on_a_fake_cgroupfs(fake_v2: Path, tmp_path: Path) -> None:
    mountinfo = f"30 25 0:26 / {fake_v2} rw,nosuid - cgroup2 cgroup2 rw\n"
    enforcer = detect("", mountinfo=mountinfo, own="0::/\n")
    assert enforcer.method == CGROUP_V2
    assert not (fake_v2 / "deploy-code").exists()  # the probe leaves nothing behind
    assert "+memory" in (fake_v2 / "cgroup.subtree_control").read_text()

    conf = enforcer.prepare(_spec(tmp_path, memory_mb=256, cpu_cores=0.5))
    leaf = fake_v2 / "deploy-code" / "p" / "web.0"
    assert conf.cgroup is not None and conf.cgroup.dirs == (str(leaf),)
    assert (leaf / "memory.max").read_text() == str(256 << 20)
    assert (leaf / "memory.swap.max").read_text() == "0"
    assert (leaf / "memory.oom.group").read_text() == "1"
    assert (leaf / "cpu.max").read_text() == "50000 100000"
    assert "+cpu" in (fake_v2 / "deploy-code" / "p" / "cgroup.subtree_control").read_text()
    assert conf.cgroup.read_applied().to_dict() == {"method": CGROUP_V2, "memory_mb": 256.0, "cpu_cores": 0.5}
    assert conf.cgroup.read_oom() is None
    with conf.child_setup() as preexec:
        assert preexec is not None  # opened cgroup.procs; the child would write "0" to it

    # While a process is in web.0, the next spawn of the replica gets web.0~1.
    (leaf / "cgroup.procs").write_text("4242\n")
    second = enforcer.prepare(_spec(tmp_path, memory_mb=256))
    assert second.cgroup is not None and second.cgroup.dirs == (str(leaf) + "~1",)
    assert conf.cgroup.pids() == [4242]
    assert conf.cgroup.remove() is False  # busy: the backend retries

    (leaf / "memory.events").write_text("oom 1\noom_kill 1\n")
    (leaf / "memory.peak").write_text(str(int(255.9 * (1 << 20))))
    assert conf.cgroup.read_oom() == OomReport(1, 256.0, 255.9)

    (leaf / "cgroup.procs").write_text("")
    assert second.cgroup.remove() is True and conf.cgroup.remove() is True
    assert not (fake_v2 / "deploy-code").exists()  # project and parent go with the last leaf


def test_nothing_declared_makes_no_cgroup(fake_v2: Path, tmp_path: Path) -> None:
    enforcer = detect("", mountinfo=f"30 25 0:26 / {fake_v2} rw - cgroup2 cgroup2 rw\n", own="0::/\n")
    conf = enforcer.prepare(_spec(tmp_path))
    assert conf.cgroup is None and conf.applied.method == NONE
    with conf.child_setup() as preexec:
        assert preexec is None  # no preexec_fn: subprocess keeps its vfork path
