"""The local planner runs every replica through the placement pipeline on a one-node cluster."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deploy_code.config import Project, load_text
from deploy_code.errors import PlacementError
from deploy_code.ports import PortAllocator
from deploy_code.scheduling import check, plan
from deploy_code.units import Resources

CAP = Resources(cpu_cores=4, memory_mb=8192, storage_gb=100, gpu_count=0)


def _project(text: str, tmp_path: Path) -> Project:
    return load_text(textwrap.dedent(text), base_dir=tmp_path, environ={})


def _plan(project: Project, selected: list[str] | None = None) -> dict[str, list[str]]:
    result = plan(project, CAP, PortAllocator(30000, 30100), now=0.0, selected=selected)
    return {name: [p.node for p in ps] for name, ps in result.placements.items()}


def _e004(project: Project) -> list[tuple[str, str]]:
    diags = check(project, CAP)
    assert diags, "expected a placement problem"
    out = []
    for d in diags:
        assert str(d.code) == "E004" and d.location is not None
        out.append((f"{d.location.line}:{d.location.column}", d.message))
    return out


def test_every_replica_lands_on_the_local_node_when_labels_match(tmp_path: Path) -> None:
    project = _project(
        """\
        settings: {labels: {disk: ssd, zone: eu}}
        services:
          db: {command: [x], replicas: 2, placement: {node_labels: {disk: ssd}}}
          web: {command: [x], placement: {affinity: [db], preferred_affinity: [db], spread: true}}
        """,
        tmp_path,
    )
    assert check(project, CAP) == []
    assert _plan(project) == {"db": ["local", "local"], "web": ["local"]}


def test_a_label_the_machine_lacks_is_e004_at_the_placement_key(tmp_path: Path) -> None:
    project = _project(
        """\
        settings: {labels: {disk: hdd}}
        services:
          db:
            command: [x]
            placement: {node_labels: {disk: ssd}}
        """,
        tmp_path,
    )
    ((where, msg),) = _e004(project)
    assert where == "5:5"
    assert "service 'db' has no node" in msg and "node label disk!=ssd" in msg
    with pytest.raises(PlacementError):
        _plan(project)


def test_anti_affinity_between_services_on_one_machine_is_e004(tmp_path: Path) -> None:
    project = _project(
        """\
        services:
          a: {command: [x]}
          b: {command: [x], placement: {anti_affinity: [a]}}
        """,
        tmp_path,
    )
    ((_, msg),) = _e004(project)
    assert "service 'b'" in msg and "anti-affinity with a" in msg
    # Deployed alone, b has nothing to avoid.
    assert _plan(project, selected=["b"]) == {"b": ["local"]}


def test_anti_affinity_with_itself_allows_one_replica_per_node(tmp_path: Path) -> None:
    one = _project("services: {a: {command: [x], placement: {anti_affinity: [a]}}}\n", tmp_path)
    assert _plan(one) == {"a": ["local"]}
    two = _project("services: {a: {command: [x], replicas: 2, placement: {anti_affinity: [a]}}}\n", tmp_path)
    ((_, msg),) = _e004(two)
    assert msg.startswith("replica 1 of service 'a' has no node")


def test_hard_affinity_needs_its_partner_deployed(tmp_path: Path) -> None:
    text = """\
        services:
          cache: {command: [x]}
          app: {command: [x], placement: {affinity: [cache]}}
        """
    project = _project(text, tmp_path)
    # app is declared after cache but placed after it even when it would come first in its wave.
    assert _plan(project) == {"cache": ["local"], "app": ["local"]}
    with pytest.raises(PlacementError) as info:
        _plan(project, selected=["app"])
    assert "cache" in info.value.message
