"""One pooled HTTP client for every http probe of the orchestrator.

httpx is imported lazily, inside :meth:`HttpClientFactory.client`: importing it costs about 100 ms, and
``up`` must reach its first spawns before any http probe runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import TracebackType

    import httpx

__all__ = ["HttpClientFactory"]

# Probes target the replicas of one machine; this bounds the sockets the pool may hold open at once.
MAX_CONNECTIONS = 64
# Idle keep-alive connections kept for the next probe of the same replica.
MAX_KEEPALIVE_CONNECTIONS = 32


class HttpClientFactory:
    """Owns one ``httpx.AsyncClient`` shared by all http probes, created on first use.

    The client never follows redirects (a 3xx is itself a pass), ignores proxy environment variables
    (probes must reach ``127.0.0.1`` directly) and, like the Kubernetes kubelet, does not verify TLS
    certificates of ``https`` probes: a probe asks "is it up", not "is it who it claims to be".
    The owner (the orchestrator) calls :meth:`aclose` once, at shutdown.
    """

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    @property
    def started(self) -> bool:
        """Whether the pooled client has been created (and not closed)."""
        return self._client is not None

    def client(self) -> httpx.AsyncClient:
        """The pooled client, created (and httpx imported) on the first call.

        Raises:
            RuntimeError: the factory was closed.
        """
        if self._closed:
            raise RuntimeError("the HTTP client factory is closed")
        if self._client is None:
            import httpx  # lazy on purpose: see the module docstring

            self._client = httpx.AsyncClient(
                follow_redirects=False,
                trust_env=False,
                verify=False,
                limits=httpx.Limits(
                    max_connections=MAX_CONNECTIONS,
                    max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS,
                ),
                headers={"User-Agent": "deploy-code-probe"},
            )
        return self._client

    async def aclose(self) -> None:
        """Close the pooled client, if one was created. Idempotent; later use raises."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> HttpClientFactory:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
