"""The control API: FastAPI on the state directory's unix socket (0600).

The FastAPI/uvicorn stack (~25 MiB, ~250 ms to import) is loaded on the first request, not before:
``up`` reaches its first spawns without it and an orchestrator nobody queries stays small.
"""

from deploy_code.api.server import SOCKET_NAME, LazyApiServer

__all__ = ["SOCKET_NAME", "LazyApiServer"]
