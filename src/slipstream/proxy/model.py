"""The proxy's data: a route (host names or a private port -> one service) and its servers.

Both are validated at construction, so every name that reaches HAProxy's config file or its admin
socket is already known to be safe there (no spaces, no ';', no quotes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from slipstream.errors import InvalidInput

ADMIN_STATES = ("ready", "drain", "maint")
# "http": routed by Host header on the shared HTTP port; "private": its own TCP port on loopback.
ROUTE_KINDS = ("http", "private")

# HAProxy server names allow letters, digits and "-_.:"; slipstream ids look like "d12-1".
_SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Service names are slugs: they are stored as map values and appear in commands.
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
# A DNS host name: dot-separated labels of letters, digits and inner hyphens. No port, no wildcard.
_HOST_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


def check_service(service: str) -> str:
    """Return ``service`` if it is a valid service name; raise :class:`InvalidInput` otherwise."""
    if not isinstance(service, str) or not _SERVICE_NAME.fullmatch(service):
        raise InvalidInput(
            f"service name {service!r} is not valid: use letters, digits, '-', '_' or '.' (at most 100 characters)"
        )
    return service


def check_server_name(name: str) -> str:
    """Return ``name`` if HAProxy accepts it as a server name; else raise :class:`InvalidInput`."""
    if not isinstance(name, str) or not _SERVER_NAME.fullmatch(name):
        raise InvalidInput(
            f"server name {name!r} is not valid: use letters, digits, '-', '_' or "
            "'.' (at most 64 characters, e.g. 'd12-1')"
        )
    return name


def check_port(port: int, what: str = "port") -> int:
    """Return ``port`` if it is a usable TCP port number; raise :class:`InvalidInput` otherwise."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise InvalidInput(f"{what} {port!r} is not a TCP port number between 1 and 65535")
    return port


def check_admin(admin: str) -> str:
    """Return ``admin`` if it is one of ready/drain/maint; raise :class:`InvalidInput` otherwise."""
    if admin not in ADMIN_STATES:
        raise InvalidInput(f"server state {admin!r} is not one of {', '.join(ADMIN_STATES)}")
    return admin


def normalise_host(host: str) -> str:
    """Return ``host`` in lower case if it is a plain host name; else raise :class:`InvalidInput`.

    Matching is case-insensitive, so the lower-case form is the canonical one. A port, a scheme, a
    path or a wildcard is rejected rather than stripped.
    """
    if not isinstance(host, str) or not host or len(host) > 253:
        raise InvalidInput(f"host {host!r} is not a host name")
    lowered = host.lower()
    if not all(_HOST_LABEL.fullmatch(label) for label in lowered.split(".")):
        raise InvalidInput(
            f"host {host!r} is not a host name: use labels of letters, digits and "
            "'-' separated by dots, without port or scheme (e.g. 'web.localhost')"
        )
    return lowered


@dataclass(frozen=True)
class ServerState:
    """One instance behind a service: its slipstream id, loopback port and HAProxy state."""

    name: str  # slipstream's server id, e.g. "d12-1" (deploy 12, instance 1)
    port: int  # loopback port of the instance (the address is always 127.0.0.1)
    admin: str  # "ready" | "drain" | "maint"
    sessions: int = 0  # requests in flight on that server (HAProxy's scur)

    def __post_init__(self) -> None:
        check_server_name(self.name)
        check_port(self.port, f"port of server {self.name}")
        check_admin(self.admin)


@dataclass(frozen=True)
class Route:
    """A service's way in and its servers.

    An "http" route names host names (matched case-insensitively, port ignored). A "private"
    route (Render's ``pserv``) has no host names: it owns one TCP listener on 127.0.0.1, whose
    ``port`` the proxy reports (and, given to ``Proxy.start``, must keep).
    """

    service: str
    hosts: tuple[str, ...]
    servers: tuple[ServerState, ...] = ()
    kind: str = "http"
    port: int | None = None

    def __post_init__(self) -> None:
        check_service(self.service)
        if self.kind not in ROUTE_KINDS:
            raise InvalidInput(f"route kind {self.kind!r} of {self.service} is not one of {', '.join(ROUTE_KINDS)}")
        hosts = tuple(normalise_host(h) for h in self.hosts)
        if len(set(hosts)) != len(hosts):
            raise InvalidInput(f"route for {self.service} names a host twice: {', '.join(hosts)}")
        if self.kind == "private" and hosts:
            raise InvalidInput(
                f"private route for {self.service} names hosts ({', '.join(hosts)}); a private service has only a port"
            )
        if self.port is not None:
            if self.kind != "private":
                raise InvalidInput(f"http route for {self.service} has a port; only a private route has one")
            check_port(self.port, f"private port of {self.service}")
        names = [s.name for s in self.servers]
        if len(set(names)) != len(names):
            raise InvalidInput(f"route for {self.service} names a server twice: {', '.join(names)}")
        object.__setattr__(self, "hosts", hosts)
        object.__setattr__(self, "servers", tuple(self.servers))
