"""What a replica's process receives: its environment and its argv, rendered for that replica.

Layers of the environment, later ones win:

1. ``ctx.environ`` (the orchestrator's environment, as the caller passes it);
2. the service's env_file variables (read at load time);
3. the service's ``env:`` values, rendered (``${NAME}`` sees layers 1 and 2, not other ``env:`` keys);
4. discovery variables: ``DEPLOY_CODE_SERVICE``, ``DEPLOY_CODE_REPLICA``, ``DEPLOY_CODE_HOST``,
   ``DEPLOY_CODE_PORT_<NAME>`` for each own port, and for each dependency with a known address
   ``DEPLOY_CODE_<DEP>_HOST`` and ``DEPLOY_CODE_<DEP>_PORT_<NAME>``.

Names are upper-cased with every character outside ``A-Z0-9`` turned into ``_``.
"""

from __future__ import annotations

import re
from dataclasses import replace

from deploy_code.config.interpolate import InterpolationContext, render
from deploy_code.config.model import ProbeSpec
from deploy_code.config.project import Project
from deploy_code.config.source import DataPath
from deploy_code.errors import ConfigError, ErrorCode, SupervisionError

__all__ = ["env_name", "render_argv", "render_probe", "service_environment"]

_NON_ALNUM = re.compile(r"[^A-Z0-9]")


def env_name(name: str) -> str:
    """``kv-store.v2`` -> ``KV_STORE_V2``: the form used inside ``DEPLOY_CODE_*`` variable names."""
    return _NON_ALNUM.sub("_", name.upper())


def _context(project: Project, service: str, ctx: InterpolationContext) -> InterpolationContext:
    if service not in project.spec.services:
        raise SupervisionError(f"service {service!r} not found", code=ErrorCode.S001)
    env_file = project.env_files.get(service, {})
    if not env_file:
        return ctx
    return replace(ctx, environ={**ctx.environ, **env_file})


def _render(project: Project, path: DataPath, template: str, ctx: InterpolationContext) -> str:
    try:
        return render(template, ctx)
    except ConfigError as exc:
        where = ".".join(str(p) for p in path)
        raise ConfigError(
            f"{where}: {exc.message}",
            code=ErrorCode.E003,
            location=project.locate(*(p for p in path if isinstance(p, str | int))),
            hint=exc.hint,
        ) from None


def service_environment(project: Project, service: str, ctx: InterpolationContext) -> dict[str, str]:
    """The environment for one replica of ``service``.

    Args:
        project: the loaded project.
        service: the service name.
        ctx: this replica's values (environment, own ports, dependency addresses, replica index).

    Returns:
        A new dict; see the module docstring for its layers.

    Raises:
        ConfigError: E003 when an ``env:`` value cannot be rendered (located in the file).
        SupervisionError: S001 when ``service`` is not in the project.
    """
    rctx = _context(project, service, ctx)
    spec = project.spec.services[service]
    env = dict(rctx.environ)
    for key, template in spec.env.items():
        env[key] = _render(project, ("services", service, "env", key), template, rctx)
    for port_name, port in ctx.ports.items():
        env[f"DEPLOY_CODE_PORT_{env_name(port_name)}"] = str(port)
    env["DEPLOY_CODE_SERVICE"] = service
    env["DEPLOY_CODE_REPLICA"] = str(ctx.replica)
    env["DEPLOY_CODE_HOST"] = project.spec.settings.host
    for dep in spec.depends_on:
        address = ctx.services.get(dep)
        if address is None:  # not placed (e.g. replicas: 0): leave it out rather than guess
            continue
        prefix = f"DEPLOY_CODE_{env_name(dep)}"
        env[f"{prefix}_HOST"] = address.host
        for port_name, port in address.ports.items():
            env[f"{prefix}_PORT_{env_name(port_name)}"] = str(port)
    return env


def render_argv(project: Project, service: str, ctx: InterpolationContext) -> list[str]:
    """The argv for one replica of ``service``: each item rendered (a shell string under ``/bin/sh -c``).

    Raises:
        ConfigError: E003 when an item cannot be rendered (located in the file).
        SupervisionError: S001 when ``service`` is not in the project.
    """
    rctx = _context(project, service, ctx)
    spec = project.spec.services[service]
    if isinstance(spec.command, str):
        return ["/bin/sh", "-c", _render(project, ("services", service, "command"), spec.command, rctx)]
    return [
        _render(project, ("services", service, "command", i), arg, rctx) for i, arg in enumerate(spec.command)
    ]


def render_probe(
    project: Project, service: str, probe: str, spec: ProbeSpec, ctx: InterpolationContext
) -> ProbeSpec:
    """A copy of ``spec`` (the service's ``health.<probe>``) with its templates rendered for one replica.

    The templated fields are an exec check's argv and an http/tcp check's host and path.

    Raises:
        ConfigError: E003 when a field cannot be rendered (located in the file).
        SupervisionError: S001 when ``service`` is not in the project.
    """
    rctx = _context(project, service, ctx)
    at: DataPath = ("services", service, "health", probe)
    update: dict[str, object] = {}
    if spec.exec is not None:
        argv = [
            _render(project, (*at, "exec", "command", i), arg, rctx)
            for i, arg in enumerate(spec.exec.command)
        ]
        update["exec"] = spec.exec.model_copy(update={"command": argv})
    if spec.http is not None:
        fields = {"path": _render(project, (*at, "http", "path"), spec.http.path, rctx)}
        if "host" in spec.http.model_fields_set:
            fields["host"] = _render(project, (*at, "http", "host"), spec.http.host, rctx)
        update["http"] = spec.http.model_copy(update=fields)
    if spec.tcp is not None and "host" in spec.tcp.model_fields_set:
        update["tcp"] = spec.tcp.model_copy(
            update={"host": _render(project, (*at, "tcp", "host"), spec.tcp.host, rctx)}
        )
    return spec.model_copy(update=update) if update else spec
