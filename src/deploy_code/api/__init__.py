"""The control API: FastAPI on the state directory's unix socket (0600), and TCP when asked.

Place in the flow: above ``supervisor`` (it reads and controls an ``Orchestrator``), below ``cli``.
The unix socket's caller is the owner, hence admin. ``api.listen`` / ``up --listen`` adds a TCP
listener that always requires a bearer token (roles admin / operator / viewer) and TLS off loopback.
Tokens are kept as sha256 digests only; no reply, log line or status document holds one.

The FastAPI/uvicorn stack (~25 MiB, ~250 ms to import) is loaded on the first request, not before:
``up`` reaches its first spawns without it and an orchestrator nobody queries stays small. What this
``__init__`` exports is stdlib-only for that reason (``create_app`` lives in ``deploy_code.api.app``).
"""

from deploy_code.api.listener import TcpPlan, plan_tcp
from deploy_code.api.server import SOCKET_NAME, LazyApiServer, TcpApiServer
from deploy_code.api.tokens import LOCAL, ROLE_RANK, Principal, Role, TokenSet, load_tokens, token_digest

__all__ = [
    "LOCAL",
    "ROLE_RANK",
    "SOCKET_NAME",
    "LazyApiServer",
    "Principal",
    "Role",
    "TcpApiServer",
    "TcpPlan",
    "TokenSet",
    "load_tokens",
    "plan_tcp",
    "token_digest",
]
