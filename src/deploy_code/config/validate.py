"""Cross-field rules over a parsed :class:`ProjectSpec` -> every problem as a :class:`Diagnostic`.

Rules here need more than one field (the model checks single fields). Each check collects all its
findings; nothing stops at the first, nothing is corrected, nothing is mutated. Dependency cycles are
*not* checked here (the graph layer finds them with their path), nor machine capacity (scheduling).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from pathlib import Path

from deploy_code.config.diagnostics import dotted
from deploy_code.config.interpolate import references
from deploy_code.config.model import ProjectSpec, ServiceSpec
from deploy_code.config.source import DataPath, SourceMap
from deploy_code.errors import ConfigError, Diagnostic, ErrorCode

__all__ = ["inside_dir", "template_fields", "validate"]

_PROBES = ("startup", "readiness", "liveness")


def inside_dir(base_dir: Path, relative: str) -> bool:
    """True when ``base_dir / relative`` (symlinks resolved) is ``base_dir`` or below it."""
    try:
        base = base_dir.resolve()
        target = (base_dir / relative).resolve()
    except (OSError, RuntimeError, ValueError):
        return False
    return target == base or base in target.parents


def _did_you_mean(word: str, choices: list[str]) -> str | None:
    if len(word) > 100:  # no name is this long; difflib would index every character of it
        return None
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean {close[0]!r}?" if close else None


def template_fields(name: str, svc: ServiceSpec) -> Iterator[tuple[DataPath, str]]:
    """Every interpolated string of a service with its data path.

    These are ``command`` (each argv item, or the shell string), ``env`` values, and the probes'
    ``exec.command`` items, ``http.host`` / ``http.path`` and ``tcp.host``.
    """
    base: DataPath = ("services", name)
    if isinstance(svc.command, str):
        yield (*base, "command"), svc.command
    else:
        for i, arg in enumerate(svc.command):
            yield (*base, "command", i), arg
    for key, value in svc.env.items():
        yield (*base, "env", key), value
    for probe_name in _PROBES:
        probe = getattr(svc.health, probe_name)
        if probe is None:
            continue
        at: DataPath = (*base, "health", probe_name)
        if probe.exec is not None:
            for i, arg in enumerate(probe.exec.command):
                yield (*at, "exec", "command", i), arg
        if probe.http is not None:
            yield (*at, "http", "host"), probe.http.host
            yield (*at, "http", "path"), probe.http.path
        if probe.tcp is not None:
            yield (*at, "tcp", "host"), probe.tcp.host


def _dependencies(spec: ProjectSpec, source: SourceMap) -> Iterator[Diagnostic]:
    names = list(spec.services)
    for name, svc in spec.services.items():
        for dep in svc.depends_on:
            at = source.locate("services", name, "depends_on", dep)
            if dep == name:
                yield Diagnostic(
                    ErrorCode.E002, f"services.{name} depends on itself", at, "remove it from depends_on"
                )
            elif dep not in spec.services:
                hint = _did_you_mean(dep, names) or f"services are: {', '.join(names)}"
                yield Diagnostic(
                    ErrorCode.E002, f"services.{name}.depends_on: unknown service {dep!r}", at, hint
                )


_PLACEMENT_LISTS = ("affinity", "anti_affinity", "preferred_affinity", "preferred_anti_affinity")


def _placement(spec: ProjectSpec, source: SourceMap) -> Iterator[Diagnostic]:
    names = list(spec.services)
    for name, svc in spec.services.items():
        for field in _PLACEMENT_LISTS:
            for i, other in enumerate(getattr(svc.placement, field)):
                if other not in spec.services:
                    yield Diagnostic(
                        ErrorCode.E002,
                        f"services.{name}.placement.{field}: unknown service {other!r}",
                        source.locate("services", name, "placement", field, i),
                        _did_you_mean(other, names) or f"services are: {', '.join(names)}",
                    )


def _pool_chain(spec: ProjectSpec, pool: str) -> list[str]:
    """``pool`` and its ancestors, nearest first; stops at an unknown parent or a repeat (a cycle)."""
    chain: list[str] = []
    current: str | None = pool
    while current is not None and current in spec.pools and current not in chain:
        chain.append(current)
        current = spec.pools[current].parent
    return chain


def _pools(spec: ProjectSpec, source: SourceMap) -> Iterator[Diagnostic]:
    pools = list(spec.pools)
    for name, pool in spec.pools.items():
        at = source.locate("pools", name, "parent")
        if pool.parent is not None and pool.parent not in spec.pools:
            yield Diagnostic(
                ErrorCode.E002,
                f"pools.{name}.parent: unknown pool {pool.parent!r}",
                at,
                _did_you_mean(pool.parent, pools) or f"pools are: {', '.join(pools)}",
            )
            continue
        chain = _pool_chain(spec, name)
        last = spec.pools[chain[-1]].parent
        if last is not None and last in chain:
            cycle = " -> ".join([*chain[chain.index(last) :], last])
            yield Diagnostic(
                ErrorCode.E002, f"pools: parent cycle {cycle}", at, "one pool must have no parent"
            )
            continue
        if pool.parent is None:
            continue
        for dim, want in pool.quotas().items():
            # The nearest ancestor that limits this figure bounds it.
            for anc in _pool_chain(spec, pool.parent):
                have = spec.pools[anc].quotas().get(dim)
                if have is not None:
                    if want > have:
                        yield Diagnostic(
                            ErrorCode.E004,
                            f"pool {name!r} has {want:g} {dim} but its parent pool {anc!r} only {have:g}",
                            source.locate("pools", name, dim),
                            "a pool cannot exceed its parent: lower it or raise the parent",
                        )
                    break
    for name, svc in spec.services.items():
        if svc.pool is None:
            continue
        at = source.locate("services", name, "pool")
        if svc.pool not in spec.pools:
            yield Diagnostic(
                ErrorCode.E002,
                f"services.{name}.pool: unknown pool {svc.pool!r}",
                at,
                _did_you_mean(svc.pool, pools)
                or (f"pools are: {', '.join(pools)}" if pools else "add it under pools:"),
            )
            continue
        one = svc.resources.to_resources()
        for dim in type(one).FIELDS:
            want = getattr(one, dim) * svc.replicas
            if not want:
                continue
            for anc in _pool_chain(spec, svc.pool):
                have = spec.pools[anc].quotas().get(dim)
                if have is not None and want > have:
                    per = f" ({svc.replicas} replicas x {getattr(one, dim):g})" if svc.replicas > 1 else ""
                    yield Diagnostic(
                        ErrorCode.E004,
                        f"service {name!r} requests {want:g} {dim}{per}, but pool {anc!r} allows {have:g}",
                        source.locate("services", name, "resources", dim),
                        "lower the request or the replica count, or raise the pool's quota",
                    )
                    break


def _ports(spec: ProjectSpec, source: SourceMap) -> Iterator[Diagnostic]:
    claims: dict[int, list[tuple[str, str]]] = {}
    for name, svc in spec.services.items():
        for port_name, port in svc.ports.items():
            if port == "auto":
                continue
            claims.setdefault(port, []).append((name, port_name))
            if svc.replicas > 1:
                yield Diagnostic(
                    ErrorCode.S004,
                    f"services.{name}.ports.{port_name}: fixed port {port} cannot be shared by"
                    f" {svc.replicas} replicas",
                    source.locate("services", name, "ports", port_name),
                    "use auto (each replica gets its own port) or set replicas: 1",
                )
    for port, owners in claims.items():
        first = f"services.{owners[0][0]}.ports.{owners[0][1]}"
        for name, port_name in owners[1:]:
            yield Diagnostic(
                ErrorCode.S004,
                f"port {port} is claimed by both {first} and services.{name}.ports.{port_name}",
                source.locate("services", name, "ports", port_name),
                "give each a different port, or use auto",
            )


def _expose(spec: ProjectSpec, source: SourceMap) -> Iterator[Diagnostic]:
    """Exposed names must be declared ports; fixed front ports clash with nothing else; metrics that
    come from the front port need one."""
    fixed: dict[int, str] = {
        int(port): f"services.{name}.ports.{port_name}"
        for name, svc in spec.services.items()
        for port_name, port in svc.ports.items()
        if port != "auto"
    }
    for name, svc in spec.services.items():
        for port_name, exp in svc.expose.items():
            if port_name not in svc.ports:
                yield Diagnostic(
                    ErrorCode.E002,
                    f"services.{name}.expose.{port_name}: the service declares no port {port_name!r}",
                    source.locate("services", name, "expose", port_name),
                    _did_you_mean(port_name, list(svc.ports))
                    or f"declare it under services.{name}.ports first",
                )
                continue
            if exp.port == "auto":
                continue
            here = f"services.{name}.expose.{port_name}.port"
            other = fixed.get(int(exp.port))
            if other is not None:
                yield Diagnostic(
                    ErrorCode.S004,
                    f"front port {exp.port} is claimed by both {other} and {here}",
                    source.locate("services", name, "expose", port_name, "port"),
                    "give the front port a number of its own, or use auto",
                )
            fixed[int(exp.port)] = here
        auto = svc.autoscale
        if auto is not None and auto.metric != "cpu" and not svc.expose:
            yield Diagnostic(
                ErrorCode.E002,
                f"services.{name}.autoscale.metric: {auto.metric} is measured at the front port, "
                "but the service exposes none",
                source.locate("services", name, "autoscale", "metric"),
                f"add services.{name}.expose, or scale on cpu",
            )


def _probes(spec: ProjectSpec, source: SourceMap) -> Iterator[Diagnostic]:
    for name, svc in spec.services.items():
        for probe_name in _PROBES:
            probe = getattr(svc.health, probe_name)
            if probe is None or not isinstance(probe.port_ref, str) or probe.port_ref in svc.ports:
                continue
            path = ("services", name, "health", probe_name, probe.kind, "port")
            hint = _did_you_mean(probe.port_ref, list(svc.ports)) or (
                f"declare it under services.{name}.ports, or give a port number"
            )
            yield Diagnostic(
                ErrorCode.E002,
                f"{dotted(path)}: services.{name} has no port named {probe.port_ref!r}",
                source.locate(*path),
                hint,
            )


def _template(
    spec: ProjectSpec,
    name: str,
    template: str,
    variables: Mapping[str, str],
) -> Iterator[tuple[str, str | None]]:
    """Problems of one template as ``(message, hint)``."""
    svc = spec.services[name]
    try:
        refs = references(template)
    except ConfigError as exc:
        yield exc.message, exc.hint
        return
    for ref in refs:
        if ref.kind == "env" and ref.default is None and ref.name not in variables:
            yield (
                f"environment variable {ref.name} is not set (in {ref.text})",
                f"set {ref.name} in the environment or the env_file, or write ${{{ref.name}:-default}}",
            )
        elif ref.kind == "port" and ref.name not in svc.ports:
            yield (
                f"services.{name} has no port named {ref.name!r} (in {ref.text})",
                _did_you_mean(ref.name, list(svc.ports)) or f"declare it under services.{name}.ports",
            )
        elif ref.service is not None and ref.service not in spec.services:
            yield (
                f"unknown service {ref.service!r} (in {ref.text})",
                _did_you_mean(ref.service, list(spec.services)),
            )
        elif ref.service is not None and ref.service not in svc.depends_on:
            yield (
                f"services.{name} refers to {ref.service!r} but does not depend on it (in {ref.text})",
                f"add {ref.service} to services.{name}.depends_on",
            )
        elif ref.kind == "service_port" and ref.service is not None:
            other = spec.services[ref.service]
            if ref.name not in other.ports:
                yield (
                    f"services.{ref.service} has no port named {ref.name!r} (in {ref.text})",
                    _did_you_mean(ref.name, list(other.ports)),
                )


def _templates(
    spec: ProjectSpec,
    source: SourceMap,
    environ: Mapping[str, str],
    env_files: Mapping[str, Mapping[str, str]],
) -> Iterator[Diagnostic]:
    for name, svc in spec.services.items():
        variables = {**environ, **env_files.get(name, {})}
        for path, template in template_fields(name, svc):
            if "$" not in template:
                continue
            for message, hint in _template(spec, name, template, variables):
                yield Diagnostic(ErrorCode.E003, f"{dotted(path)}: {message}", source.locate(*path), hint)


def _os_strings(spec: ProjectSpec, source: SourceMap) -> Iterator[Diagnostic]:
    """Text the OS receives (argv, environment, paths, hosts) cannot hold NUL; variable names no '='.

    Without this a file validates and then every start fails on ``ValueError: embedded null byte``.
    """
    texts: list[tuple[DataPath, str]] = [
        (("settings", "host"), spec.settings.host),
        (("settings", "state_dir"), spec.settings.state_dir),
    ]
    for name, svc in spec.services.items():
        base: DataPath = ("services", name)
        texts.extend(template_fields(name, svc))
        if svc.working_dir is not None:
            texts.append(((*base, "working_dir"), svc.working_dir))
        files = [svc.env_file] if isinstance(svc.env_file, str) else list(svc.env_file or [])
        for i, rel in enumerate(files):
            texts.append(((*base, "env_file", *((i,) if isinstance(svc.env_file, list) else ())), rel))
        for key in svc.env:
            if not key or "=" in key or "\0" in key:
                yield Diagnostic(
                    ErrorCode.E002,
                    f"services.{name}.env: invalid variable name {key!r}",
                    source.locate(*base, "env", key),
                    "a variable name is not empty and holds no '=' and no NUL character",
                )
    for path, text in texts:
        if "\0" in text:
            yield Diagnostic(
                ErrorCode.E002,
                f"{dotted(path)}: contains a NUL character (\\0); no argument, variable or path can hold one",
                source.locate(*path),
                "remove the \\0 escape",
            )


def _working_dirs(spec: ProjectSpec, source: SourceMap, base_dir: Path) -> Iterator[Diagnostic]:
    for name, svc in spec.services.items():
        if svc.working_dir is None or "\0" in svc.working_dir:  # NUL: reported by _os_strings
            continue
        if not inside_dir(base_dir, svc.working_dir):
            yield Diagnostic(
                ErrorCode.E002,
                f"services.{name}.working_dir: {svc.working_dir!r} leaves the project directory {base_dir}",
                source.locate("services", name, "working_dir"),
                "use a path inside the directory of the config file",
            )


def _alerts(spec: ProjectSpec, source: SourceMap) -> Iterator[Diagnostic]:
    """An alert rule for a service the file does not have would never fire: E002."""
    names = list(spec.services)
    for i, rule in enumerate(spec.alerts.rules):
        if rule.service is not None and rule.service not in spec.services:
            yield Diagnostic(
                ErrorCode.E002,
                f"alerts: rule {rule.name!r} watches unknown service {rule.service!r}",
                source.locate("alerts", "rules", i, "service"),
                _did_you_mean(rule.service, names) or f"services are: {', '.join(names)}",
            )


def validate(
    spec: ProjectSpec,
    source: SourceMap,
    *,
    base_dir: Path,
    environ: Mapping[str, str],
    env_files: Mapping[str, Mapping[str, str]],
) -> list[Diagnostic]:
    """Check the rules that span fields and services.

    Args:
        spec: the parsed file.
        source: positions, for the diagnostics' locations.
        base_dir: the config file's directory.
        environ: the environment ``${NAME}`` resolves against.
        env_files: each service's env_file variables (layered over ``environ`` for its templates).

    Returns:
        Every problem found (empty when the project is valid).
    """
    return [
        *_alerts(spec, source),
        *_dependencies(spec, source),
        *_expose(spec, source),
        *_os_strings(spec, source),
        *_placement(spec, source),
        *_pools(spec, source),
        *_ports(spec, source),
        *_probes(spec, source),
        *_templates(spec, source, environ, env_files),
        *_working_dirs(spec, source, base_dir),
    ]
