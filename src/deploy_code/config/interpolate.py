"""``${...}`` templates: parse, list references, render. Resolve, never guess.

Grammar (the whole of it)::

    $$                              a literal "$"
    ${NAME}                         environment variable NAME (error when unset)
    ${NAME:-default}                NAME, or the literal default when NAME is unset or empty
    ${ports.PORT}                   this replica's port named PORT
    ${services.SVC.host}            the host of dependency SVC
    ${services.SVC.ports.PORT}      the port PORT of dependency SVC (replica 0's)
    ${replica}                      this replica's index, 0-based

A ``$`` not followed by ``{`` or ``$`` is kept as is, so ``$HOME`` reaches a shell untouched. Defaults
are literal text: they cannot contain ``}`` or another ``${``. Every failure is a
:class:`~deploy_code.errors.ConfigError` with code E003.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from deploy_code.errors import ConfigError, ErrorCode

__all__ = [
    "InterpolationContext",
    "Reference",
    "ReferenceKind",
    "ServiceAddress",
    "references",
    "render",
]

ReferenceKind = Literal["env", "port", "service_host", "service_port", "replica"]

_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PORT_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_SERVICE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_FORMS = "${NAME}, ${NAME:-default}, ${ports.P}, ${services.S.host}, ${services.S.ports.P}, ${replica}"


@dataclass(frozen=True, slots=True)
class Reference:
    """One parsed ``${...}``.

    Attributes:
        kind: what it refers to.
        text: the reference as written, e.g. ``${services.kv.ports.main}``.
        name: the variable name (``env``) or the port name (``port``, ``service_port``); else empty.
        service: the service of ``service_host`` / ``service_port``; else None.
        default: the literal default of ``${NAME:-default}``; else None.
        offset: index of the ``$`` in the template.
    """

    kind: ReferenceKind
    text: str
    name: str = ""
    service: str | None = None
    default: str | None = None
    offset: int = 0


@dataclass(frozen=True, slots=True)
class ServiceAddress:
    """Where a dependency can be reached: its host and its ports by name."""

    host: str
    ports: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InterpolationContext:
    """Everything a template may refer to, for one replica.

    Attributes:
        environ: variables for ``${NAME}`` (callers layer the env_file over the process environment).
        ports: this replica's ports by name.
        services: addresses of the services it may refer to (its dependencies).
        replica: this replica's index.
    """

    environ: Mapping[str, str]
    ports: Mapping[str, int]
    services: Mapping[str, ServiceAddress]
    replica: int = 0


def _fail(message: str, hint: str | None = None) -> ConfigError:
    return ConfigError(message, code=ErrorCode.E003, hint=hint)


def _parse_expr(expr: str, text: str, offset: int) -> Reference:
    if expr == "replica":
        return Reference("replica", text, offset=offset)
    if expr.startswith("ports."):
        name = expr[len("ports.") :]
        if _PORT_RE.fullmatch(name):
            return Reference("port", text, name=name, offset=offset)
        raise _fail(f"invalid port reference {text!r}", "write ${ports.NAME} with a port name")
    if expr.startswith("services."):
        rest = expr[len("services.") :]
        if rest.endswith(".host") and _SERVICE_RE.fullmatch(rest[: -len(".host")]):
            return Reference("service_host", text, service=rest[: -len(".host")], offset=offset)
        svc, sep, port = rest.rpartition(".ports.")
        if sep and _SERVICE_RE.fullmatch(svc) and _PORT_RE.fullmatch(port):
            return Reference("service_port", text, name=port, service=svc, offset=offset)
        raise _fail(
            f"invalid service reference {text!r}",
            "write ${services.NAME.host} or ${services.NAME.ports.PORT}",
        )
    name, sep, default = expr.partition(":-")
    if not _ENV_RE.fullmatch(name):
        raise _fail(f"invalid reference {text!r}", f"the forms are {_FORMS}; write $$ for a literal $")
    if sep and "${" in default:
        raise _fail(
            f"nested reference in the default of {text!r} is not supported",
            "defaults are literal text",
        )
    return Reference("env", text, name=name, default=default if sep else None, offset=offset)


@functools.lru_cache(maxsize=4096)  # templates are few and re-rendered on every restart
def _parse(template: str) -> tuple[str | Reference, ...]:
    parts: list[str | Reference] = []
    buf: list[str] = []
    i = 0
    n = len(template)
    while i < n:
        j = template.find("$", i)
        if j < 0:
            buf.append(template[i:])
            break
        buf.append(template[i:j])
        nxt = template[j + 1 : j + 2]
        if nxt == "$":
            buf.append("$")
            i = j + 2
        elif nxt == "{":
            close = template.find("}", j + 2)
            if close < 0:
                raise _fail(
                    f"unterminated reference {template[j : j + 40]!r} (missing '}}')",
                    "close it with } or write $$ for a literal $",
                )
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(_parse_expr(template[j + 2 : close], template[j : close + 1], j))
            i = close + 1
        else:
            buf.append("$")
            i = j + 1
    if buf:
        parts.append("".join(buf))
    return tuple(p for p in parts if p != "")


def references(template: str) -> list[Reference]:
    """The references in ``template``, in order.

    Raises:
        ConfigError: E003 when the template is malformed.
    """
    return [p for p in _parse(template) if isinstance(p, Reference)]


def _resolve(ref: Reference, ctx: InterpolationContext) -> str:
    if ref.kind == "env":
        value = ctx.environ.get(ref.name)
        if ref.default is not None and not value:
            return ref.default
        if value is None:
            raise _fail(
                f"environment variable {ref.name} is not set (in {ref.text})",
                f"set {ref.name} in the environment or the env_file, or write ${{{ref.name}:-default}}",
            )
        return value
    if ref.kind == "replica":
        return str(ctx.replica)
    if ref.kind == "port":
        if ref.name not in ctx.ports:
            raise _fail(
                f"no port named {ref.name!r} (in {ref.text})", "declare it under this service's ports"
            )
        return str(ctx.ports[ref.name])
    assert ref.service is not None  # service_host / service_port always carry one
    address = ctx.services.get(ref.service)
    if address is None:
        raise _fail(
            f"no address for service {ref.service!r} (in {ref.text})",
            f"add {ref.service} to depends_on",
        )
    if ref.kind == "service_host":
        return address.host
    if ref.name not in address.ports:
        raise _fail(f"service {ref.service!r} has no port named {ref.name!r} (in {ref.text})")
    return str(address.ports[ref.name])


def render(template: str, ctx: InterpolationContext) -> str:
    """Substitute every reference in ``template``.

    Args:
        template: text with ``${...}`` references and ``$$`` escapes.
        ctx: the values references resolve to.

    Returns:
        The rendered text.

    Raises:
        ConfigError: E003 when the template is malformed or a reference cannot be resolved.
    """
    return "".join(p if isinstance(p, str) else _resolve(p, ctx) for p in _parse(template))
