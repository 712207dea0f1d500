"""Enforcing a replica's declared memory and CPU: cgroups where the machine allows, rlimits otherwise.

:func:`detect` (once per backend) takes the first method that works on this machine:

``cgroup-v2``
    The unified hierarchy offers the ``memory`` and ``cpu`` controllers. Each process gets
    ``<top>/deploy-code/<project>/<replica>`` with ``memory.max``, ``memory.swap.max = 0`` (swap must not
    stretch the limit), ``memory.oom.group = 1`` (an OOM kill takes the whole replica, not one of its
    workers) and ``cpu.max = "<quota> <period>"``. The parent hangs off the top of the hierarchy
    that we can see, not off our own cgroup: v2 lets processes live only in leaves, and our own cgroup
    holds us, so it could not hand controllers down to children.
``cgroup-v1``
    ``memory`` and ``cpu`` are mounted as v1 hierarchies and writable (root). Each process gets
    ``<our cgroup>/deploy-code/<project>/<replica>`` in both, with ``memory.limit_in_bytes`` (and
    ``memory.memsw.limit_in_bytes`` equal to it, where swap accounting exists) and
    ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``. The parent sits below the orchestrator's own cgroup, so
    whatever limit or accounting already covers the orchestrator covers its replicas too.
``rlimit``
    No writable cgroups. Memory becomes ``RLIMIT_DATA``: heap plus private writable mappings, i.e. what
    a program really allocates. Not ``RLIMIT_AS``: address space also counts reservations that use no
    memory (glibc reserves 64 MiB per malloc arena; language runtimes reserve heaps up front), so under a
    32 MiB ``RLIMIT_AS`` a CPython that needs 20 MiB cannot allocate at all. Past the limit an allocation
    fails (``ENOMEM``, ``MemoryError`` in Python) and the program decides what happens; the kernel kills
    nothing, so there is no out-of-memory report. CPU is *not* enforced: no rlimit expresses a share of a
    core (``RLIMIT_CPU`` is a total of CPU seconds followed by a kill).
``none``
    Not Linux, or asked for.

``DEPLOY_CODE_LIMITS=rlimit`` (or ``none``) in the orchestrator's environment skips the cgroup methods.

Entering the cgroup without a race: the child moves itself, between fork and exec. The parent opens each
``cgroup.procs`` (close-on-exec) and the child's ``preexec_fn`` writes ``0`` ("the writing process") to
each, then execs: not one instruction of the service runs outside its limits, and nothing it forks can
escape them. ``clone3(CLONE_INTO_CGROUP)`` does the same in the kernel but Python does not expose it;
writing the pid from the parent after the spawn would leave the service unlimited for a moment (long
enough for a fast allocation, and for children forked meanwhile to stay outside for good). The
``preexec_fn`` only calls ``write`` and ``setrlimit`` (no locks, no imports, no allocation of note),
which keeps it safe in the threaded orchestrator; it is used only when a limit applies, otherwise the
spawn keeps ``subprocess``'s faster vfork path.

Reading the outcome: at exit, ``oom_kill`` in ``memory.events`` (v2) or ``memory.oom_control`` (v1,
kernel >= 4.13) counts the kernel's kills in the cgroup, and the peak is ``memory.peak`` (v2, kernel >=
5.19) or ``memory.max_usage_in_bytes`` (v1). Every spawn gets a fresh leaf (an empty leftover of the same
name is removed and made again), so the counters belong to that process alone.

Cleanup: the backend removes the leaf (``rmdir``) once the process has exited and its handle is closed,
then the project's and the ``deploy-code`` directories when they are empty. A leaf still holding
processes (stragglers being killed) is retried a bounded number of times by the backend.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import resource
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from deploy_code.runtime.backend import AppliedLimits, OomReport, ProcessSpec, ResourceLimits

__all__ = [
    "CGROUP_V1",
    "CGROUP_V2",
    "ENV_VAR",
    "NONE",
    "RLIMIT",
    "Confinement",
    "LimitEnforcer",
    "ReplicaCgroup",
    "detect",
]

CGROUP_V2 = "cgroup-v2"
CGROUP_V1 = "cgroup-v1"
RLIMIT = "rlimit"
NONE = "none"
ENV_VAR = "DEPLOY_CODE_LIMITS"  # "rlimit" or "none" caps the method; anything else (or unset) detects
PARENT = "deploy-code"  # the directory that holds every project's cgroups
CPU_PERIOD_US = 100_000  # CFS period: 100 ms, the kernel's default
_MIN_QUOTA_US = 1_000  # the kernel refuses CFS quotas under 1 ms
_LEAF_TRIES = 8  # names tried (<replica>, <replica>~1, ...) while an older process still holds one
_PROJECT_TRIES = 3  # a concurrent cleanup may remove the project directory between mkdir calls
_UNLIMITED_V1 = 1 << 62  # v1 reports "no limit" as a page-rounded LLONG_MAX
_MIB = float(1 << 20)
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_OCTAL = re.compile(r"\\([0-7]{3})")


@dataclass(frozen=True, slots=True)
class _Mount:
    """A mounted cgroup hierarchy: its mount point and the cgroup path mounted there."""

    mount: str
    root: str

    def dir_of(self, cgroup_path: str) -> str | None:
        """The directory of ``cgroup_path`` (as in ``/proc/<pid>/cgroup``); None when outside the mount."""
        root = self.root.rstrip("/")
        if cgroup_path != root and not cgroup_path.startswith(root + "/"):
            return None
        return os.path.normpath(self.mount + "/" + cgroup_path[len(root) :])


@dataclass(frozen=True, slots=True)
class ReplicaCgroup:
    """One process's cgroup: a directory (v2), or one per limited controller (v1).

    Attributes:
        version: 1 or 2.
        memory_dir: where memory is limited and accounted; None when no memory limit applies (v1).
        cpu_dir: where CPU is limited; None when no CPU limit applies (v1). Equal to ``memory_dir`` on v2.
    """

    version: int
    memory_dir: str | None
    cpu_dir: str | None

    @property
    def dirs(self) -> tuple[str, ...]:
        """Each directory once."""
        return tuple(dict.fromkeys(d for d in (self.memory_dir, self.cpu_dir) if d is not None))

    def pids(self) -> list[int]:
        """Processes still in the cgroup."""
        found: set[int] = set()
        for d in self.dirs:
            with contextlib.suppress(OSError, ValueError):
                found.update(int(x) for x in _read(d, "cgroup.procs").split())
        return sorted(found)

    def read_applied(self) -> AppliedLimits:
        """The limits in force, read back from the cgroup (used for re-adopted processes)."""
        memory_mb = cpu_cores = 0.0
        with contextlib.suppress(OSError, ValueError):
            if self.memory_dir is not None:
                memory_mb = self._memory_limit() / _MIB
            if self.cpu_dir is not None:
                if self.version == 2:
                    quota, _, period = _read(self.cpu_dir, "cpu.max").partition(" ")
                    cpu_cores = 0.0 if quota == "max" else int(quota) / int(period)
                else:
                    quota_us = int(_read(self.cpu_dir, "cpu.cfs_quota_us"))
                    period_us = int(_read(self.cpu_dir, "cpu.cfs_period_us"))
                    cpu_cores = 0.0 if quota_us < 0 else quota_us / period_us
        method = CGROUP_V2 if self.version == 2 else CGROUP_V1
        return AppliedLimits(method, round(memory_mb, 3), round(cpu_cores, 3))

    def read_oom(self) -> OomReport | None:
        """The out-of-memory killer's work in this cgroup, or None when it killed nothing (or unknown)."""
        if self.memory_dir is None:
            return None
        try:
            if self.version == 2:
                kills = _field(_read(self.memory_dir, "memory.events"), "oom_kill")
                peak_file = "memory.peak"
            else:
                kills = _field(_read(self.memory_dir, "memory.oom_control"), "oom_kill")
                peak_file = "memory.max_usage_in_bytes"
            if not kills:
                return None
            limit = self._memory_limit()
        except (OSError, ValueError):
            return None
        peak: float | None = None
        with contextlib.suppress(OSError, ValueError):
            peak = int(_read(self.memory_dir, peak_file)) / _MIB
        return OomReport(kills, round(limit / _MIB, 3), None if peak is None else round(peak, 3))

    def _memory_limit(self) -> int:
        assert self.memory_dir is not None
        if self.version == 2:
            text = _read(self.memory_dir, "memory.max")
            return 0 if text == "max" else int(text)
        value = int(_read(self.memory_dir, "memory.limit_in_bytes"))
        return 0 if value >= _UNLIMITED_V1 else value

    def remove(self) -> bool:
        """``rmdir`` the cgroup, then its project's and ``deploy-code`` directories if now empty.

        Returns:
            True when every directory of this cgroup is gone; False while processes remain in one.
        """
        gone = True
        for d in self.dirs:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    raise
                gone = False
                continue
            project = os.path.dirname(d)
            top = os.path.dirname(project)
            for empty in (project, top) if os.path.basename(top) == PARENT else ():
                try:
                    os.rmdir(empty)  # fails (EBUSY/ENOTEMPTY) while other replicas' cgroups are there
                except OSError:
                    break
        return gone


@dataclass(frozen=True, slots=True)
class Confinement:
    """What the spawn must do to one child: the limits it gets and the cgroup or rlimits that carry them.

    Attributes:
        applied: the limits and method, as the handle reports them.
        cgroup: the child's cgroup, already made and limited; the child enters it before exec.
        rlimits: ``(resource, limit)`` pairs the child sets on itself before exec.
    """

    applied: AppliedLimits = field(default_factory=AppliedLimits)
    cgroup: ReplicaCgroup | None = None
    rlimits: tuple[tuple[int, int], ...] = ()

    @contextlib.contextmanager
    def child_setup(self) -> Iterator[Callable[[], None] | None]:
        """Open what the child needs and yield its ``preexec_fn`` (None: nothing to do, keep vfork).

        The ``cgroup.procs`` files are opened here, in the spawning thread, and closed when the block
        ends: the child has its own copies by then (and close-on-exec drops those at exec).
        """
        fds: list[int] = []
        try:
            if self.cgroup is not None:
                for d in self.cgroup.dirs:
                    fds.append(os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC))
            yield _preexec(tuple(fds), self.rlimits) if fds or self.rlimits else None
        finally:
            for fd in fds:
                os.close(fd)


def _preexec(fds: tuple[int, ...], rlimits: tuple[tuple[int, int], ...]) -> Callable[[], None]:
    def enter() -> None:  # runs in the child between fork and exec: syscalls only
        for fd in fds:
            os.write(fd, b"0")  # "0": move the writing process
        for res, limit in rlimits:
            resource.setrlimit(res, (limit, limit))

    return enter


class LimitEnforcer:
    """Makes each replica's :class:`Confinement` with the method :func:`detect` chose.

    Args:
        method: ``cgroup-v2``, ``cgroup-v1``, ``rlimit`` or ``none``.
        memory_parent: the ``deploy-code`` directory in the memory hierarchy (cgroup methods).
        cpu_parent: the same in the cpu hierarchy (the same directory on v2).
        mounts: the hierarchies by controller (``""`` for v2), to find an adopted process's cgroup.
    """

    def __init__(
        self,
        method: str,
        *,
        memory_parent: str = "",
        cpu_parent: str = "",
        mounts: dict[str, _Mount] | None = None,
    ) -> None:
        self.method = method
        self.memory_parent = memory_parent
        self.cpu_parent = cpu_parent
        self._mounts = dict(mounts or {})

    def __repr__(self) -> str:
        return f"<LimitEnforcer {self.method} {self.memory_parent or ''}>"

    @property
    def parents(self) -> tuple[str, ...]:
        """The ``deploy-code`` directories replicas' cgroups go under (none for rlimit/none)."""
        return tuple(dict.fromkeys(p for p in (self.memory_parent, self.cpu_parent) if p))

    def prepare(self, spec: ProcessSpec) -> Confinement:
        """Make the cgroup (or choose the rlimits) for one spawn of ``spec``. Blocking: call off the loop.

        Args:
            spec: the process about to be spawned; ``spec.limits`` says what to enforce.

        Returns:
            The confinement; ``applied.method`` is ``none`` when nothing is declared (or enforceable).

        Raises:
            OSError: the cgroup could not be made or limited (whatever was made is removed again).
        """
        applied = self.plan(spec.limits)
        memory_mb, cpu_cores = applied.memory_mb, applied.cpu_cores
        if applied.method == RLIMIT:
            limit = _clamp_to_hard(resource.RLIMIT_DATA, int(memory_mb * _MIB))
            return Confinement(applied, rlimits=((resource.RLIMIT_DATA, limit),))
        if applied.method == NONE:
            return Confinement()
        project = _safe(spec.project or "default")
        leaf = _safe(spec.name)
        made: list[str] = []
        try:
            if self.method == CGROUP_V2:
                d = self._make_leaf(self.memory_parent, project, leaf, made, enable=True)
                cgroup = ReplicaCgroup(2, d, d)
                if memory_mb:
                    _write(d, "memory.max", str(int(memory_mb * _MIB)))
                    if os.path.exists(os.path.join(d, "memory.swap.max")):
                        _write(d, "memory.swap.max", "0")
                    if os.path.exists(os.path.join(d, "memory.oom.group")):
                        _write(d, "memory.oom.group", "1")  # an OOM kill takes the whole replica
                if cpu_cores:
                    _write(d, "cpu.max", f"{_quota_us(cpu_cores)} {CPU_PERIOD_US}")
            else:
                mem_dir = cpu_dir = None
                if memory_mb:
                    mem_dir = self._make_leaf(self.memory_parent, project, leaf, made, enable=False)
                    limit_bytes = str(int(memory_mb * _MIB))
                    _write(mem_dir, "memory.limit_in_bytes", limit_bytes)  # before memsw: memsw >= limit
                    if os.path.exists(os.path.join(mem_dir, "memory.memsw.limit_in_bytes")):
                        _write(mem_dir, "memory.memsw.limit_in_bytes", limit_bytes)
                if cpu_cores:
                    cpu_dir = self._make_leaf(self.cpu_parent, project, leaf, made, enable=False)
                    _write(cpu_dir, "cpu.cfs_period_us", str(CPU_PERIOD_US))
                    _write(cpu_dir, "cpu.cfs_quota_us", str(_quota_us(cpu_cores)))
                cgroup = ReplicaCgroup(1, mem_dir, cpu_dir)
        except OSError:
            for d in made:
                with contextlib.suppress(OSError):
                    os.rmdir(d)
            raise
        return Confinement(applied, cgroup=cgroup)

    def plan(self, limits: ResourceLimits) -> AppliedLimits:
        """What :meth:`prepare` would enforce for ``limits`` (pure; status shows it between processes)."""
        memory_mb = max(limits.memory_mb, 0.0)
        cpu_cores = max(limits.cpu_cores, 0.0)
        if self.method == RLIMIT and memory_mb:
            return AppliedLimits(RLIMIT, memory_mb, 0.0)  # no rlimit can hold a share of a core
        if self.method in (CGROUP_V1, CGROUP_V2) and (memory_mb or cpu_cores):
            return AppliedLimits(self.method, memory_mb, cpu_cores)
        return AppliedLimits()

    def _make_leaf(self, parent: str, project: str, leaf: str, made: list[str], *, enable: bool) -> str:
        """Make ``parent/project/leaf`` (or ``leaf~N`` while an older process still holds ``leaf``)."""
        for attempt in range(_PROJECT_TRIES):
            try:
                for d in (parent, os.path.join(parent, project)):
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(d)
                    if enable:
                        _enable_controllers(d)
                path = _fresh_dir(os.path.join(parent, project), leaf)
            except FileNotFoundError:  # a cleanup removed an empty parent between our mkdir calls
                if attempt == _PROJECT_TRIES - 1:
                    raise
                continue
            made.append(path)
            return path
        raise AssertionError("unreachable")

    def find(self, pid: int) -> ReplicaCgroup | None:
        """The ``deploy-code`` cgroup of a running process (to re-adopt it), or None."""
        if self.method not in (CGROUP_V1, CGROUP_V2):
            return None
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                paths = _own_cgroups(f.read())
        except OSError:
            return None

        def ours(key: str) -> str | None:
            mount, path = self._mounts.get(key), paths.get(key)
            if mount is None or path is None or f"/{PARENT}/" not in path:
                return None
            return mount.dir_of(path)

        if self.method == CGROUP_V2:
            d = ours("")
            return None if d is None else ReplicaCgroup(2, d, d)
        mem_dir, cpu_dir = ours("memory"), ours("cpu")
        if mem_dir is None and cpu_dir is None:
            return None
        return ReplicaCgroup(1, mem_dir, cpu_dir)

    def adopted_limits(self, pid: int, cgroup: ReplicaCgroup | None) -> AppliedLimits:
        """What is enforced on a re-adopted process: read from its cgroup, or its ``RLIMIT_DATA``."""
        if cgroup is not None:
            return cgroup.read_applied()
        if self.method == RLIMIT:
            with contextlib.suppress(OSError):
                soft, _ = resource.prlimit(pid, resource.RLIMIT_DATA)
                if soft != resource.RLIM_INFINITY:
                    return AppliedLimits(RLIMIT, round(soft / _MIB, 3), 0.0)
        return AppliedLimits()


def detect(mode: str | None = None, *, mountinfo: str | None = None, own: str | None = None) -> LimitEnforcer:
    """Choose how limits are enforced here (see the module docstring). Blocking, but quick.

    Args:
        mode: ``rlimit`` or ``none`` to skip the cgroup methods; None reads ``DEPLOY_CODE_LIMITS``.
        mountinfo: the text of ``/proc/self/mountinfo`` (tests give their own).
        own: the text of ``/proc/self/cgroup`` (tests give their own).

    Returns:
        The enforcer; its ``method`` is what ``status`` shows.
    """
    mode = (os.environ.get(ENV_VAR, "") if mode is None else mode).strip().lower()
    if not sys.platform.startswith("linux") or mode == NONE:
        return LimitEnforcer(NONE)
    if mode != RLIMIT:
        try:
            mountinfo = _slurp("/proc/self/mountinfo") if mountinfo is None else mountinfo
            own_paths = _own_cgroups(_slurp("/proc/self/cgroup") if own is None else own)
        except OSError:
            return LimitEnforcer(RLIMIT)
        v2, v1 = _cgroup_mounts(mountinfo)
        for attempt in (_try_v2, _try_v1):
            with contextlib.suppress(OSError, ValueError):
                found = attempt(v2, v1, own_paths)
                if found is not None:
                    return found
    return LimitEnforcer(RLIMIT)


def _try_v2(v2: _Mount | None, _v1: dict[str, _Mount], _own: dict[str, str]) -> LimitEnforcer | None:
    if v2 is None:
        return None
    if not {"memory", "cpu"} <= set(_read(v2.mount, "cgroup.controllers").split()):
        return None  # hybrid layout: the controllers are bound to v1 hierarchies
    _enable_controllers(v2.mount)
    parent = os.path.join(v2.mount, PARENT)
    _probe_parent(parent, ("memory.max", "cpu.max"), enable=True)
    return LimitEnforcer(CGROUP_V2, memory_parent=parent, cpu_parent=parent, mounts={"": v2})


def _try_v1(_v2: _Mount | None, v1: dict[str, _Mount], own: dict[str, str]) -> LimitEnforcer | None:
    if "memory" not in v1 or "cpu" not in v1:
        return None
    parents: dict[str, str] = {}
    for controller, needed in (("memory", "memory.limit_in_bytes"), ("cpu", "cpu.cfs_quota_us")):
        mount = v1[controller]
        own_path = own.get(controller)
        base = (mount.dir_of(own_path) if own_path is not None else None) or mount.mount
        parents[controller] = os.path.join(base, PARENT)
        _probe_parent(parents[controller], (needed,), enable=False)
    return LimitEnforcer(
        CGROUP_V1, memory_parent=parents["memory"], cpu_parent=parents["cpu"], mounts=dict(v1)
    )


def _probe_parent(parent: str, needed: tuple[str, ...], *, enable: bool) -> None:
    """Check that ``parent`` can be made and limited; leave it only if it was already there."""
    created = False
    try:
        os.mkdir(parent)
        created = True
    except FileExistsError:
        pass
    try:
        if enable:
            _enable_controllers(parent)
        probe = os.path.join(parent, f".probe-{os.getpid()}")
        os.mkdir(probe)
        try:
            for name in needed:
                if not os.access(os.path.join(probe, name), os.W_OK):
                    raise PermissionError(errno.EACCES, "not writable", os.path.join(probe, name))
        finally:
            os.rmdir(probe)
    finally:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(parent)


def _cgroup_mounts(mountinfo: str) -> tuple[_Mount | None, dict[str, _Mount]]:
    """The v2 mount and the v1 ``memory`` / ``cpu`` mounts, from ``/proc/self/mountinfo``."""
    v2: _Mount | None = None
    v1: dict[str, _Mount] = {}
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        mount = _Mount(_unescape(fields[4]), _unescape(fields[3]))
        if tail[0] == "cgroup2" and v2 is None:
            v2 = mount
        elif tail[0] == "cgroup":
            for option in tail[2].split(","):
                if option in ("memory", "cpu"):
                    v1.setdefault(option, mount)
    return v2, v1


def _own_cgroups(text: str) -> dict[str, str]:
    """``/proc/<pid>/cgroup`` as controller -> path; the v2 path under ``""``."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if parts[0] == "0" and controllers == "":
            paths[""] = path
        for controller in controllers.split(","):
            if controller:
                paths[controller] = path
    return paths


def _fresh_dir(parent: str, leaf: str) -> str:
    for n in range(_LEAF_TRIES):
        path = os.path.join(parent, leaf if n == 0 else f"{leaf}~{n}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            pass
        try:
            os.rmdir(path)  # an empty leftover: its process exited while no orchestrator watched it
        except OSError as exc:
            if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                continue  # an older process of this replica is still in it
            raise
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
            return path
    raise OSError(errno.EBUSY, f"no free cgroup name for {leaf!r} after {_LEAF_TRIES} tries", parent)


def _enable_controllers(d: str) -> None:
    present = set(_read(d, "cgroup.subtree_control").split())
    missing = [c for c in ("memory", "cpu") if c not in present]
    if missing:
        _write(d, "cgroup.subtree_control", " ".join(f"+{c}" for c in missing))


def _quota_us(cpu_cores: float) -> int:
    return max(_MIN_QUOTA_US, round(cpu_cores * CPU_PERIOD_US))


def _clamp_to_hard(res: int, limit: int) -> int:
    """An unprivileged process cannot raise its hard limit: never ask for more than it has."""
    _, hard = resource.getrlimit(res)
    return limit if hard == resource.RLIM_INFINITY else min(limit, hard)


def _safe(name: str) -> str:
    """A name usable as one path component (cgroup names cannot hold ``/``; no ``.``/``..``)."""
    cleaned = _SAFE.sub("_", name)
    return cleaned if cleaned.strip(".") else "_" + cleaned


def _field(text: str, key: str) -> int:
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    raise ValueError(f"no {key} field")


def _unescape(text: str) -> str:
    return _OCTAL.sub(lambda m: chr(int(m[1], 8)), text)


def _slurp(path: str) -> str:
    with open(path) as f:
        return f.read()


def _read(d: str, name: str) -> str:
    with open(os.path.join(d, name)) as f:
        return f.read().strip()


def _write(d: str, name: str, value: str) -> None:
    fd = os.open(os.path.join(d, name), os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)  # as `echo >` does
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)
