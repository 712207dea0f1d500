"""Pools, placement references, capacity overrides and headroom: located errors and the figures used."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deploy_code.config import load_text
from deploy_code.errors import ConfigError
from deploy_code.scheduling import check, effective_capacity
from deploy_code.units import Resources


def _diags(text: str, tmp_path: Path) -> list[tuple[str, str, str]]:
    with pytest.raises(ConfigError) as info:
        load_text(textwrap.dedent(text), base_dir=tmp_path, environ={})
    out = []
    for d in info.value.diagnostics:
        assert d.location is not None
        out.append((str(d.code), f"{d.location.line}:{d.location.column}", d.message + f" [{d.hint}]"))
    return out


def test_unknown_pool_with_did_you_mean(tmp_path: Path) -> None:
    text = """\
        pools:
          batch: {cpu_cores: 2}
        services:
          job: {command: [x], pool: bacth}
        """
    ((code, where, msg),) = _diags(text, tmp_path)
    assert (code, where) == ("E002", "4:23")
    assert "unknown pool 'bacth'" in msg and "did you mean 'batch'?" in msg


def test_pool_larger_than_its_parent_is_e004(tmp_path: Path) -> None:
    text = """\
        pools:
          batch: {cpu_cores: 4, memory_mb: 1024}
          nightly: {cpu_cores: 8, parent: batch}
        services:
          job: {command: [x], pool: nightly}
        """
    ((code, where, msg),) = _diags(text, tmp_path)
    assert (code, where) == ("E004", "3:13")
    assert "pool 'nightly' has 8 cpu_cores" in msg and "'batch' only 4" in msg


def test_pool_parent_unknown_and_cycle(tmp_path: Path) -> None:
    text = """\
        pools:
          a: {parent: b}
          b: {parent: a}
          c: {parent: nope}
        services:
          job: {command: [x]}
        """
    found = _diags(text, tmp_path)
    assert any(code == "E002" and "parent cycle a -> b -> a" in msg for code, _, msg in found)
    assert any(code == "E002" and "unknown pool 'nope'" in msg for code, _, msg in found)


def test_service_larger_than_its_pool_counts_replicas(tmp_path: Path) -> None:
    text = """\
        pools:
          batch: {memory_mb: 1000}
        services:
          job:
            command: [x]
            pool: batch
            replicas: 3
            resources: {memory_mb: 400}
        """
    ((code, where, msg),) = _diags(text, tmp_path)
    assert (code, where) == ("E004", "8:17")
    assert "requests 1200 memory_mb (3 replicas x 400)" in msg and "pool 'batch' allows 1000" in msg


def test_an_unlimited_figure_is_bounded_by_the_parent_only(tmp_path: Path) -> None:
    project = load_text(
        textwrap.dedent(
            """\
            pools:
              gpu-jobs: {gpu_count: 2}
              train: {parent: gpu-jobs, cpu_cores: 4}
            services:
              t: {command: [x], pool: train, resources: {gpu_count: 2, cpu_cores: 4, memory_mb: 99999}}
            """
        ),
        base_dir=tmp_path,
        environ={},
    )
    assert project.spec.pools["train"].quotas() == {"cpu_cores": 4.0}


def test_placement_names_unknown_services(tmp_path: Path) -> None:
    text = """\
        services:
          db: {command: [x]}
          api: {command: [x], placement: {anti_affinity: [dbb], affinity: [db]}}
        """
    ((code, where, msg),) = _diags(text, tmp_path)
    assert code == "E002" and where.startswith("3:")
    assert "placement.anti_affinity: unknown service 'dbb'" in msg and "did you mean 'db'?" in msg


def test_effective_capacity_applies_overrides_then_headroom(tmp_path: Path) -> None:
    project = load_text(
        "settings: {capacity: {cpu_cores: 3}, headroom: {cpu_cores: 0.5, memory_mb: 512}}\n"
        "services: {a: {command: [x]}}\n",
        base_dir=tmp_path,
        environ={},
    )
    got = effective_capacity(project, Resources(16, 8192, 100, 1))
    assert got == Resources(2.5, 7680, 100, 1)


def test_default_headroom_keeps_memory_back_and_e004_says_so(tmp_path: Path) -> None:
    project = load_text(
        "services: {big: {command: [x], resources: {memory_mb: 1000}}}\n", base_dir=tmp_path, environ={}
    )
    avail = effective_capacity(project, Resources(4, 1024, 10, 0))
    assert avail.memory_mb == 768
    ((diag,),) = [check(project, avail)]
    assert str(diag.code) == "E004" and "offers 768 MiB" in diag.message and "256 kept back" in diag.message
