"""A two-service deployment file for the Python API tests (real processes, real sockets)."""

from __future__ import annotations

from tests.helpers import PY, Deployment

# A TCP server that says which port it listens on (logs) and exits on SIGTERM.
SERVER = (
    "import os,socket,signal,sys\n"
    "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
    "s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    "print('listening', sys.argv[1], flush=True)\n"
    "while True:\n"
    "    c,_=s.accept(); c.close()\n"
)


def write_two_services(dep: Deployment, port_range: str, api_section: str = "") -> None:
    """``db`` and two replicas of ``api`` (which waits for db to be healthy), tcp readiness probes."""
    server = dep.root / "server.py"
    server.write_text(SERVER)
    dep.write(
        f"""\
        name: clienttest
        settings: {{port_range: {port_range}}}
        services:
          db:
            command: [{PY}, {server}, "${{ports.main}}"]
            ports: {{main: auto}}
            health: {{readiness: {{tcp: {{port: main}}, period: 200ms}}}}
          api:
            command: [{PY}, {server}, "${{ports.http}}"]
            ports: {{http: auto}}
            replicas: 2
            depends_on: {{db: healthy}}
            timeouts: {{stop: 2s}}
            health: {{readiness: {{tcp: {{port: http}}, period: 200ms}}}}
        """
    )
    if api_section:
        with dep.file.open("a") as f:
            f.write(api_section)
