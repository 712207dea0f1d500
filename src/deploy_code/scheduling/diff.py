"""What ``apply`` would change: the difference between the running file and a new one. Pure.

A service is *added*, *removed*, *scaled* (only ``replicas`` differs), *changed* (anything that a
running process depends on differs: command, env, ports, resources, probes, ...) or a *dependant*:
unchanged itself, but it interpolates the address of a changed dependency whose port it does not
reach through a front port, so its rendered environment would change with the new replicas' ports.
Fields that only the orchestrator reads (``autoscale``, ``deploy``, ``priority``) change nothing that
runs and are applied in place.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from deploy_code.config.model import ProjectSpec, ServiceSpec
from deploy_code.graph import build

__all__ = ["Change", "diff", "settings_changed"]

_IN_PLACE = frozenset({"replicas", "autoscale", "deploy", "priority"})


@dataclass(frozen=True, slots=True)
class Change:
    """One service's change. ``fields`` names what differs (for ``changed``) or the dependency."""

    service: str
    kind: str  # added | removed | changed | scaled | dependant | in-place
    fields: tuple[str, ...] = ()
    old_replicas: int = 0
    new_replicas: int = 0

    def describe(self) -> str:
        """One line for ``plan``."""
        if self.kind == "scaled":
            return f"{self.service}: scale {self.old_replicas} -> {self.new_replicas}"
        if self.kind in ("changed", "in-place"):
            return f"{self.service}: {self.kind} ({', '.join(self.fields)})"
        if self.kind == "dependant":
            return f"{self.service}: redeployed (its inputs from {', '.join(self.fields)} change)"
        return f"{self.service}: {self.kind}"


def _differing(old: ServiceSpec, new: ServiceSpec) -> list[str]:
    a, b = old.model_dump(), new.model_dump()
    return [k for k in a if a[k] != b.get(k)]


def _mentions(svc: ServiceSpec, dep: str) -> set[str]:
    """Port names of ``dep`` that ``svc``'s command and env interpolate (``${services.dep.ports.P}``)."""
    text = " ".join(
        [*(svc.command if isinstance(svc.command, list) else [svc.command]), *map(str, svc.env.values())]
    )
    pattern = re.compile(r"\$\{services\." + re.escape(dep) + r"\.ports\.([A-Za-z0-9_-]+)\}")
    return set(pattern.findall(text))


def settings_changed(old: ProjectSpec, new: ProjectSpec) -> list[str]:
    """Top-level sections ``apply`` cannot change in place (they need ``down`` and ``up``)."""
    return [k for k in ("settings", "pools", "api") if getattr(old, k) != getattr(new, k)]


def diff(old: ProjectSpec, new: ProjectSpec) -> list[Change]:
    """Every service's change from ``old`` to ``new``, in the new file's start order (removed last).

    Raises:
        CycleError: the new file's dependencies form a cycle (validation reports it first).
    """
    changes: dict[str, Change] = {}
    for name, spec in new.services.items():
        before = old.services.get(name)
        if before is None:
            changes[name] = Change(name, "added", new_replicas=spec.replicas)
            continue
        fields = _differing(before, spec)
        running = [f for f in fields if f not in _IN_PLACE]
        if running:
            changes[name] = Change(name, "changed", tuple(running), before.replicas, spec.replicas)
        elif "replicas" in fields:
            changes[name] = Change(name, "scaled", (), before.replicas, spec.replicas)
        elif fields:
            changes[name] = Change(name, "in-place", tuple(fields), before.replicas, spec.replicas)
    order = build({n: dict(s.depends_on) for n, s in new.services.items()}).start_order()
    for name in order:  # dependencies first: a dependant of a dependant is found too
        if name in changes and changes[name].kind not in ("scaled", "in-place"):
            continue
        spec = new.services[name]
        moved = [
            dep
            for dep in spec.depends_on
            if dep in changes
            and changes[dep].kind in ("changed", "dependant", "added")
            and _mentions(spec, dep) - set(new.services[dep].expose)
        ]
        if moved:
            prev = old.services.get(name)
            changes[name] = Change(
                name, "dependant", tuple(moved), prev.replicas if prev else 0, spec.replicas
            )
    out = [changes[n] for n in order if n in changes]
    out += [
        Change(n, "removed", old_replicas=s.replicas)
        for n, s in old.services.items()
        if n not in new.services
    ]
    return out
