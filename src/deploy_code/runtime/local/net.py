"""Ask the operating system whether a TCP port is free on an address."""

from __future__ import annotations

import socket


def port_is_free(host: str, port: int) -> bool:
    """True when a listener could bind ``host:port`` now.

    The probe sets SO_REUSEADDR, as servers do, so a port whose old connections linger in TIME_WAIT
    counts as free (the allocator's quarantine already keeps recently released ports aside), while a
    port another program has bound or listens on does not.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True
