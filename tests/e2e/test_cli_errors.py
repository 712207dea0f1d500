"""Bad input through the real CLI: coded errors with locations, never a traceback."""

from __future__ import annotations

import json

from tests.helpers import Deployment


def test_missing_file_is_e001(deployment: Deployment) -> None:
    res = deployment.cli("validate")
    assert res.returncode == 2
    assert "E001" in res.stderr
    assert "Traceback" not in res.stderr


def test_every_error_reported_at_once_with_locations(deployment: Deployment) -> None:
    deployment.write(
        """\
        version: 1
        services:
          a:
            command: [sleep, "10"]
            depnds_on: [b]
            health:
              readiness: {tcp: {port: nope}}
          b:
            command: [sleep, "10"]
            depends_on: {c: healthy}
            timeouts: {stop: soon}
        """
    )
    res = deployment.cli("validate")
    assert res.returncode == 2, res.stdout
    err = res.stderr
    assert "Traceback" not in err
    assert "deploy-code.yaml:5:5" in err and "depends_on" in err  # did you mean
    assert "E002" in err
    assert err.count("E00") >= 2


def test_cycle_prints_the_path(deployment: Deployment) -> None:
    deployment.write(
        """\
        services:
          a: {command: [sleep, "1"], depends_on: {b: started}}
          b: {command: [sleep, "1"], depends_on: {c: started}}
          c: {command: [sleep, "1"], depends_on: {a: started}}
        """
    )
    res = deployment.cli("validate")
    assert res.returncode != 0
    assert "cycle" in res.stderr
    assert (
        "a -> b -> c -> a" in res.stderr
        or "b -> c -> a -> b" in res.stderr
        or "c -> a -> b -> c" in res.stderr
    )


def test_request_larger_than_machine_is_e004(deployment: Deployment) -> None:
    deployment.write(
        """\
        services:
          big:
            command: [sleep, "1"]
            resources: {memory_mb: 999999999}
        """
    )
    res = deployment.cli("validate")
    assert res.returncode != 0
    assert "E004" in res.stderr and "memory_mb" in res.stderr and "big" in res.stderr
    assert "deploy-code.yaml:4:" in res.stderr  # the resources line
    assert "999,999,999 MiB" in res.stderr


def test_schema_is_json(deployment: Deployment) -> None:
    res = deployment.cli("schema", file=False)
    assert res.returncode == 0
    doc = json.loads(res.stdout)
    assert "services" in doc["properties"]


def test_status_without_orchestrator_is_s002(deployment: Deployment) -> None:
    deployment.write("services: {a: {command: [sleep, '1']}}\n")
    res = deployment.cli("status")
    assert res.returncode != 0
    assert "S002" in res.stderr


def test_plan_shows_waves_and_ports(deployment: Deployment) -> None:
    deployment.write(
        """\
        settings: {port_range: 31000-31010}
        services:
          db: {command: [sleep, "1"], ports: {main: auto}}
          api: {command: [sleep, "1"], ports: {http: auto}, replicas: 2, depends_on: {db: healthy}}
        """
    )
    res = deployment.cli("plan", "--format", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["waves"] == [["db"], ["api"]]
    ports = [r["ports"] for r in doc["replicas"]]
    assert len({p for d in ports for p in d.values()}) == 3
    assert all(31000 <= p <= 31010 for d in ports for p in d.values())
    assert not deployment.state_dir.exists() or not (deployment.state_dir / "api.sock").exists()


def test_status_resources_shows_what_the_deployment_books(deployment: Deployment) -> None:
    deployment.write(
        """\
        services:
          a: {command: [sleep, "60"], replicas: 2, resources: {cpu_cores: 0.5, memory_mb: 100}, health: {min_uptime: 0}}
        """
    )
    assert deployment.cli("up", "--detach").returncode == 0
    out = deployment.cli("status", "--resources", check=True).stdout
    row = next(line for line in out.splitlines() if "memory_mb" in line)
    assert "200" in row  # two replicas x 100 MiB booked
    doc = json.loads(deployment.cli("status", "--format", "json", check=True).stdout)
    assert doc["resources"]["allocated"]["cpu_cores"] == 1.0
