"""The proxy boundary as the engine sees it: routes in, servers switched, live state read back.

``proxy.haproxy.Proxy`` implements it against a real HAProxy; ``proxy.fake.FakeProxy`` in memory,
for engine and API tests. Every call is idempotent where the name says so (``set_route``,
``set_private_route``, ``add_server`` of the same name and port) and checks its arguments first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from slipstream.proxy.model import Route, ServerState


class ProxyControl(Protocol):
    """What the engine asks of its proxy."""

    def start(self, routes: Sequence[Route] = ()) -> None:
        """Start the proxy (or adopt the running one) and make it include ``routes``."""
        ...

    def stop(self, grace: float = 10.0) -> None:
        """Stop the proxy; in-flight requests finish within ``grace`` seconds."""
        ...

    def running(self) -> bool:
        """True while the proxy process is alive."""
        ...

    def set_route(self, service: str, hosts: Sequence[str]) -> None:
        """Route exactly ``hosts`` to ``service`` (created or replaced)."""
        ...

    def set_private_route(self, service: str) -> int:
        """Give ``service`` its private TCP listener (idempotent); return the stable port."""
        ...

    def remove_route(self, service: str) -> None:
        """Stop routing ``service`` and free its servers and listener."""
        ...

    def add_server(self, service: str, name: str, port: int) -> None:
        """Add an instance to ``service``'s backend in maint (no traffic yet)."""
        ...

    def set_state(self, service: str, name: str, admin: str) -> None:
        """Set one server "ready", "drain" or "maint"."""
        ...

    def switch(self, service: str, ready: Sequence[str], drain: Sequence[str], fallback: Sequence[str] = ()) -> None:
        """The flip: ``ready`` servers take traffic, ``drain`` ones get no new requests, at once;
        ``fallback`` (drained) servers take the requests the ready ones refuse or drop."""
        ...

    def release_fallback(self, service: str) -> None:
        """End what ``switch(fallback=...)`` started: the drained servers are only drained."""
        ...

    def remove_server(self, service: str, name: str, timeout: float = 10.0) -> None:
        """Take a server out and free its slot once its requests have ended."""
        ...

    def servers(self, service: str) -> list[ServerState]:
        """The live servers of ``service`` (state and requests in flight)."""
        ...

    def routes(self) -> list[Route]:
        """Every live route with its servers."""
        ...

    def private_ports(self) -> dict[str, int]:
        """Each private service's listener port (cheap: no server is read)."""
        ...
