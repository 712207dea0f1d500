"""The ``api:`` section: a TCP listener, its TLS files, and the tokens allowed to use it.

The unix socket in the state directory is always there and needs no token (its 0600 mode is the
check). ``api.listen`` adds a TCP listener; this module checks what can be checked without I/O:

* ``listen`` is ``HOST:PORT`` (``[::1]:8080`` for IPv6);
* a listener that is not on loopback (127.0.0.0/8, ::1, ``localhost``) needs ``tls``;
* a listener needs at least one token (TCP always requires a bearer token);
* each token has exactly one source: ``sha256`` (hex digest of the token), ``env`` (a variable
  holding the token) or ``file`` (a file holding it). Reading env and files is the API layer's job,
  at start-up; nothing here sees a plaintext token.

``model.py`` imports this module for ``ProjectSpec.api``, so the strict base is declared here with
the same settings as ``model._Strict`` (importing it back would be a cycle).
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

__all__ = ["ApiSpec", "ApiTls", "ApiToken", "Role", "is_loopback", "parse_listen"]

Role = Literal["admin", "operator", "viewer"]

MAX_TOKENS = 1_000  # each request compares against every digest: keep the list small
_TOKEN_NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
_ENV_NAME_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,254}$"
_SHA256_RE = r"^[0-9a-fA-F]{64}$"


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` -> ``(host, port)``; ``[v6]:PORT`` for IPv6. Port 0 means "any free port".

    Raises:
        ValueError: the value is not ``HOST:PORT`` with a port in 0..65535.
    """
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"listen must be HOST:PORT (e.g. 127.0.0.1:8700), got {value!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"listen: {host!r} in brackets is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(f"listen: write an IPv6 address in brackets, e.g. [::1]:8700, got {value!r}")
    port = int(port_text)
    if port > 65535:
        raise ValueError(f"listen: port {port} is not in 0..65535")
    return host, port


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``. Other names count as not loopback (no lookup)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiTls(_Strict):
    """Certificate chain and private key (PEM files; relative paths are from the file's directory)."""

    cert: str = Field(min_length=1)
    key: str = Field(min_length=1)


class ApiToken(_Strict):
    """One bearer token: a name (shown in logs and status instead of the token), a role, one source."""

    name: str = Field(pattern=_TOKEN_NAME_RE)
    role: Role
    sha256: str | None = Field(default=None, pattern=_SHA256_RE)
    env: str | None = Field(default=None, pattern=_ENV_NAME_RE)
    file: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_source(self) -> ApiToken:
        given = [k for k in ("sha256", "env", "file") if getattr(self, k) is not None]
        if len(given) != 1:
            found = " and ".join(given) if given else "none"
            raise ValueError(f"a token has exactly one source (sha256, env or file); found {found}")
        return self


class ApiSpec(_Strict):
    """The ``api:`` section. ``listen`` is declared last: its check reads ``tls`` and ``tokens``."""

    tls: ApiTls | None = None
    tokens: list[ApiToken] = Field(default_factory=list, max_length=MAX_TOKENS)
    listen: str | None = None

    @field_validator("tokens")
    @classmethod
    def _unique_names(cls, tokens: list[ApiToken]) -> list[ApiToken]:
        seen: set[str] = set()
        for tok in tokens:
            if tok.name in seen:
                raise ValueError(f"token name {tok.name!r} is used twice")
            seen.add(tok.name)
        return tokens

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        host, _ = parse_listen(value)
        # A field that failed its own validation is missing from info.data: report only that.
        if "tls" in info.data and info.data["tls"] is None and not is_loopback(host):
            raise ValueError(
                f"listening on {host} (not loopback) needs api.tls (cert and key): tokens would cross"
                " the network in clear text"
            )
        if "tokens" in info.data and not info.data["tokens"]:
            raise ValueError("a TCP listener needs at least one entry in api.tokens (TCP always needs one)")
        return value
