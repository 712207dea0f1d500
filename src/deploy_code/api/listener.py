"""What the TCP listener will be, checked before anything binds: address, TLS, tokens.

``api.listen`` in the file (or ``up --listen HOST:PORT``, which replaces it) asks for a TCP listener
beside the unix socket. It is refused, with every reason at once, when:

* the host is not loopback and ``api.tls`` is missing (tokens would cross the network in clear);
* ``api.tokens`` is empty (TCP always requires a bearer token; there is no anonymous access);
* a token's ``env:`` / ``file:`` source cannot be read, or the TLS files cannot be loaded.

Stdlib only (``ssl``), so ``up`` can check this before the HTTP stack is loaded.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field

from deploy_code.api.tokens import TokenSet, load_tokens
from deploy_code.config import Project, is_loopback, parse_listen
from deploy_code.errors import ConfigError, DeployCodeError, Diagnostic, ErrorCode, Location

__all__ = ["TcpPlan", "plan_tcp"]


@dataclass(frozen=True, slots=True)
class TcpPlan:
    """A checked TCP listener.

    Attributes:
        host: address to bind (an IP literal or ``localhost``).
        port: port to bind (0: any free port; the server reports the one it got).
        tokens: the digests it accepts (never empty).
        ssl: the server TLS context, or None on loopback without ``api.tls``.
        origin: ``api.listen`` or ``--listen``, for messages.
        location: where ``api.listen`` is written (None for ``--listen``).
    """

    host: str
    port: int
    tokens: TokenSet
    ssl: ssl.SSLContext | None = field(default=None, repr=False)
    origin: str = "api.listen"
    location: Location | None = None

    @property
    def url(self) -> str:
        """``http(s)://host:port`` as configured (port may be 0 before binding)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.ssl else 'http'}://{host}:{self.port}"


def plan_tcp(project: Project, environ: Mapping[str, str], listen: str | None = None) -> TcpPlan | None:
    """Check the TCP listener the file (or ``listen``, from ``--listen``) asks for.

    Args:
        project: the loaded file (its ``api`` section).
        environ: for ``env:`` token sources.
        listen: ``HOST:PORT`` from the command line; replaces ``api.listen``.

    Returns:
        None when no listener is asked for.

    Raises:
        ConfigError: E002 with every reason the listener cannot start, each located at ``api.listen``
            (or naming ``--listen``), ``api.tokens[i]`` or ``api.tls``.
    """
    api = project.spec.api
    value = listen if listen is not None else api.listen
    if value is None:
        return None
    origin = "--listen" if listen is not None else "api.listen"
    where = None if listen is not None else project.locate("api", "listen")
    try:
        host, port = parse_listen(value)
    except ValueError as exc:
        raise ConfigError(f"{origin}: {exc}", location=where) from None
    diags: list[Diagnostic] = []
    if not is_loopback(host) and api.tls is None:
        diags.append(
            Diagnostic(
                ErrorCode.E002,
                f"{origin}: listening on {host} (not loopback) needs api.tls (cert and key):"
                " tokens would cross the network in clear text",
                where or project.locate("api"),
                "add api.tls: {cert: FILE, key: FILE}, or listen on 127.0.0.1",
            )
        )
    if not api.tokens:
        diags.append(
            Diagnostic(
                ErrorCode.E002,
                f"{origin}: a TCP listener needs at least one entry in api.tokens (TCP always needs one)",
                where or project.locate("api"),
                "add api.tokens: [{name: NAME, role: admin|operator|viewer, env: VAR}]",
            )
        )
    tokens = TokenSet(())
    try:
        tokens = load_tokens(project, environ)
    except DeployCodeError as exc:
        diags.extend(exc.diagnostics)
    context: ssl.SSLContext | None = None
    if api.tls is not None:
        try:
            context = _server_context(project, api.tls.cert, api.tls.key)
        except DeployCodeError as exc:
            diags.extend(exc.diagnostics)
    if diags:
        raise ConfigError.from_diagnostics(diags)
    return TcpPlan(host, port, tokens, context, origin, where)


def _server_context(project: Project, cert: str, key: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # TLS 1.2+, no compression
    try:
        context.load_cert_chain(project.base_dir / cert, project.base_dir / key)
    except (OSError, ssl.SSLError) as exc:
        # ssl errors name the failing step, never key material.
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"api.tls: cannot load {cert} and {key}: {why}",
            location=project.locate("api", "tls", "cert"),
            hint="cert is the PEM certificate chain, key its PEM private key (unencrypted)",
        ) from None
    return context
