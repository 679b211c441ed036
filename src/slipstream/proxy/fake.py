"""An in-memory proxy for engine and API tests: the ``ProxyControl`` protocol, no HAProxy.

It keeps the same rules as the real one where the engine depends on them: servers are added in
maint, a host belongs to one service, a private service keeps its port, unknown services and
servers raise ``NotFound``. Tests read ``calls`` (every mutating call, in order) and may set
``sessions`` to pretend requests are in flight on a server.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from slipstream.errors import Conflict, InvalidInput, NotFound
from slipstream.proxy.model import Route, ServerState, check_admin, check_port, check_server_name, check_service


@dataclass
class _Backend:
    kind: str
    hosts: tuple[str, ...] = ()
    port: int | None = None
    servers: dict[str, ServerState] = field(default_factory=dict)


class FakeProxy:
    """Implements ``ProxyControl`` in memory."""

    def __init__(self, *, first_private_port: int = 21000) -> None:
        self.calls: list[tuple[object, ...]] = []
        self.sessions: dict[tuple[str, str], int] = {}  # (service, server) -> requests in flight
        self.fallback: dict[str, tuple[str, ...]] = {}  # service -> servers held as backups
        self._running = False
        self._backends: dict[str, _Backend] = {}
        self._ports = itertools.count(first_private_port)
        self._lock = threading.RLock()

    # -- process --------------------------------------------------------------------------------
    def start(self, routes: Sequence[Route] = ()) -> None:
        with self._lock:
            self.calls.append(("start", tuple(r.service for r in routes)))
            self._running = True
            for r in routes:
                b = self._backends.setdefault(r.service, _Backend(r.kind, r.hosts, r.port))
                if r.kind == "private" and b.port is None:
                    b.port = r.port or next(self._ports)
                for s in r.servers:
                    b.servers.setdefault(s.name, s)

    def stop(self, grace: float = 10.0) -> None:
        with self._lock:
            self.calls.append(("stop",))
            self._running = False

    def running(self) -> bool:
        return self._running

    def crash(self) -> None:
        """Test control: the proxy process dies (kill -9), keeping nothing."""
        with self._lock:
            self._running = False
            self._backends.clear()

    # -- routes ---------------------------------------------------------------------------------
    def set_route(self, service: str, hosts: Sequence[str]) -> None:
        wanted = Route(service, tuple(hosts)).hosts
        with self._lock:
            b = self._backends.get(service)
            if b is not None and b.kind == "private":
                raise Conflict(f"service {service} is a private service; it cannot have host names")
            for other, ob in self._backends.items():
                if other != service and set(ob.hosts) & set(wanted):
                    raise Conflict(f"host {sorted(set(ob.hosts) & set(wanted))[0]} is already routed to {other}")
            self.calls.append(("set_route", service, wanted))
            if b is None:
                self._backends[service] = _Backend("http", wanted)
            else:
                b.hosts = wanted

    def set_private_route(self, service: str) -> int:
        check_service(service)
        with self._lock:
            b = self._backends.get(service)
            if b is not None and b.kind != "private":
                raise Conflict(f"service {service} is routed by host name, not as a private service")
            if b is None:
                b = self._backends[service] = _Backend("private", port=next(self._ports))
                self.calls.append(("set_private_route", service, b.port))
            assert b.port is not None
            return b.port

    def remove_route(self, service: str) -> None:
        with self._lock:
            self.calls.append(("remove_route", service))
            self._backends.pop(service, None)

    # -- servers --------------------------------------------------------------------------------
    def add_server(self, service: str, name: str, port: int) -> None:
        check_service(service)
        check_server_name(name)
        check_port(port, f"port of server {name}")
        with self._lock:
            b = self._backends.setdefault(service, _Backend("http"))
            have = b.servers.get(name)
            if have is not None:
                if have.port != port:
                    raise Conflict(f"server {name} of {service} already exists on port {have.port}, not {port}")
                return
            self.calls.append(("add_server", service, name, port))
            b.servers[name] = ServerState(name, port, "maint")

    def set_state(self, service: str, name: str, admin: str) -> None:
        check_admin(admin)
        with self._lock:
            b = self._require(service, [name])
            self.calls.append(("set_state", service, name, admin))
            b.servers[name] = replace(b.servers[name], admin=admin)

    def switch(self, service: str, ready: Sequence[str], drain: Sequence[str], fallback: Sequence[str] = ()) -> None:
        if set(ready) & set(drain):
            raise InvalidInput("servers cannot be both ready and drain")
        with self._lock:
            b = self._require(service, [*ready, *drain, *fallback])
            self.calls.append(("switch", service, tuple(ready), tuple(drain)))
            if fallback:
                self.calls.append(("fallback", service, tuple(fallback)))
                self.fallback[service] = tuple(fallback)
            for n in ready:
                b.servers[n] = replace(b.servers[n], admin="ready")
            for n in drain:
                b.servers[n] = replace(b.servers[n], admin="drain")

    def release_fallback(self, service: str) -> None:
        with self._lock:
            if self.fallback.pop(service, None):
                self.calls.append(("release_fallback", service))

    def remove_server(self, service: str, name: str, timeout: float = 10.0) -> None:
        with self._lock:
            b = self._backends.get(service)
            if b is None or name not in b.servers:
                return
            if self.sessions.get((service, name), 0):
                b.servers[name] = replace(b.servers[name], admin="maint")
                raise Conflict(f"server {name} of {service} still has requests in flight after {timeout:g} s")
            self.calls.append(("remove_server", service, name))
            del b.servers[name]

    def servers(self, service: str) -> list[ServerState]:
        with self._lock:
            b = self._require(service, [])
            return [replace(s, sessions=self.sessions.get((service, s.name), 0)) for s in b.servers.values()]

    def routes(self) -> list[Route]:
        with self._lock:
            return [
                Route(svc, b.hosts, tuple(self.servers(svc)), kind=b.kind, port=b.port)
                for svc, b in sorted(self._backends.items())
            ]

    def private_ports(self) -> dict[str, int]:
        with self._lock:
            return {svc: b.port for svc, b in self._backends.items() if b.kind == "private" and b.port}

    # -- test helpers ---------------------------------------------------------------------------
    def ready(self, service: str) -> list[str]:
        """Names of the servers of ``service`` that take traffic now."""
        with self._lock:
            b = self._backends.get(service)
            return sorted(n for n, s in (b.servers.items() if b else ()) if s.admin == "ready")

    def _require(self, service: str, names: Sequence[str]) -> _Backend:
        check_service(service)
        b = self._backends.get(service)
        if b is None:
            raise NotFound(f"service {service} has no route in the proxy")
        missing = [n for n in names if n not in b.servers]
        if missing:
            raise NotFound(f"service {service} has no server {', '.join(missing)} in the proxy")
        return b
