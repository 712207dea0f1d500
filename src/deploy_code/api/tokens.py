"""Bearer tokens as sha256 digests, and who they are.

Tokens named in ``api.tokens`` are turned into digests once, at start-up: a ``sha256:`` entry is the
digest already; ``env:`` and ``file:`` entries are read, hashed, and the plaintext is dropped at once.
Only digests, names and roles are kept, so nothing that could leak a token (a log line, a status
document, an error) can hold one. A presented token is hashed and compared with *every* digest using
:func:`hmac.compare_digest`, so the time taken does not tell which entry (if any) came close.

Stdlib only: ``deploy_code.api`` imports this without loading FastAPI.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from deploy_code.config import ApiSpec, Project
from deploy_code.errors import ConfigError, Diagnostic, ErrorCode

__all__ = ["LOCAL", "ROLE_RANK", "Principal", "Role", "TokenSet", "load_tokens", "token_digest"]

Role = Literal["admin", "operator", "viewer"]
ROLE_RANK: Mapping[Role, int] = {"viewer": 0, "operator": 1, "admin": 2}
MAX_TOKEN_BYTES = 4096  # a presented token longer than this is refused unhashed
MAX_TOKEN_FILE_BYTES = 64 * 1024  # a token file is one line; refuse to read a large file into memory


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request: a token's name and role (never the token)."""

    name: str
    role: Role

    def allows(self, needed: Role) -> bool:
        """True when this principal's role is ``needed`` or above (viewer < operator < admin)."""
        return ROLE_RANK[self.role] >= ROLE_RANK[needed]


LOCAL = Principal("unix-socket", "admin")
"""The caller on the 0600 unix socket: the socket's file mode already proved it is the owner."""


def token_digest(token: str) -> bytes:
    """sha256 of the token's UTF-8 bytes (what ``sha256:`` entries hold, hex-encoded)."""
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    role: Role
    digest: bytes = field(repr=False)


class TokenSet:
    """The digests a listener accepts.

    Args:
        entries: ``(name, role, sha256 digest)`` triples.
    """

    def __init__(self, entries: Iterable[tuple[str, Role, bytes]]) -> None:
        self._entries = tuple(_Entry(name, role, digest) for name, role, digest in entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"TokenSet({[e.name for e in self._entries]})"

    def identify(self, presented: str) -> Principal | None:
        """The principal whose digest matches ``presented``, or None. Every digest is compared."""
        raw = presented.encode()
        if not raw or len(raw) > MAX_TOKEN_BYTES:
            return None
        got = hashlib.sha256(raw).digest()
        found: _Entry | None = None
        for entry in self._entries:
            if hmac.compare_digest(got, entry.digest) and found is None:
                found = entry
        return None if found is None else Principal(found.name, found.role)

    def describe(self) -> list[dict[str, str]]:
        """Names and roles, for status (no digests)."""
        return [{"name": e.name, "role": e.role} for e in self._entries]


def load_tokens(project: Project, environ: Mapping[str, str], spec: ApiSpec | None = None) -> TokenSet:
    """Read ``api.tokens`` into digests: env variables and files are read here, once.

    Args:
        project: the loaded file (``env:`` / ``file:`` sources; relative files are from its directory).
        environ: where ``env:`` sources are looked up.
        spec: the ``api`` section to read (default: ``project.spec.api``).

    Raises:
        ConfigError: E002 for every variable that is unset or empty and every file that cannot be read
            or is empty, each at its ``api.tokens[i]`` entry. Messages never include a token.
    """
    api = spec if spec is not None else project.spec.api
    entries: list[tuple[str, Role, bytes]] = []
    diags: list[Diagnostic] = []
    for i, tok in enumerate(api.tokens):
        if tok.sha256 is not None:
            entries.append((tok.name, tok.role, bytes.fromhex(tok.sha256)))
            continue
        if tok.env is not None:
            value = environ.get(tok.env, "")
            if not value:
                diags.append(
                    Diagnostic(
                        ErrorCode.E002,
                        f"api.tokens[{i}] ({tok.name}): environment variable {tok.env} is not set or empty",
                        project.locate("api", "tokens", i, "env"),
                        f"export {tok.env} before `deploy-code up`, or use sha256: or file:",
                    )
                )
                continue
            entries.append((tok.name, tok.role, token_digest(value)))
            continue
        assert tok.file is not None  # the model guarantees exactly one source
        digest, problem = _digest_of_file(project.base_dir / tok.file)
        if digest is None:
            diags.append(
                Diagnostic(
                    ErrorCode.E002,
                    f"api.tokens[{i}] ({tok.name}): token file {tok.file}: {problem}",
                    project.locate("api", "tokens", i, "file"),
                    "one line holding the token; a relative path is from the config file's directory",
                )
            )
            continue
        entries.append((tok.name, tok.role, digest))
    if diags:
        raise ConfigError.from_diagnostics(diags)
    return TokenSet(entries)


def _digest_of_file(path: Path) -> tuple[bytes | None, str]:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_TOKEN_FILE_BYTES + 1)
    except OSError as exc:
        return None, exc.strerror or type(exc).__name__  # strerror only: never the content
    if len(data) > MAX_TOKEN_FILE_BYTES:
        return None, f"larger than {MAX_TOKEN_FILE_BYTES} bytes"
    try:
        token = data.decode().strip()
    except UnicodeDecodeError:
        return None, "not UTF-8"
    if not token:
        return None, "empty"
    return token_digest(token), ""
