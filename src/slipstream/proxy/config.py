"""Pure builders for HAProxy's files: ``haproxy.cfg`` and its two map files.

The config never changes while HAProxy runs. It declares a fixed pool of empty backends
(``be_00`` ... ``be_63``); a service borrows one of them, and two map files hold the routing:

    hosts.map      web.localhost be_03      (Host header, lower case, port removed -> backend)
    services.map   be_03 web                (backend -> service; which slot belongs to whom)

At runtime slipstream edits the maps (``add map``/``del map``) and the servers (``add server``,
``set server ... state``, ``del server``). The files are rendered with the routes known at start,
so a freshly started HAProxy already routes every service it is given.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from slipstream.errors import Conflict, InvalidInput
from slipstream.proxy.model import Route

NO_ROUTE = "no_route"           # backend answering 503 for a host no service claims
DEFAULT_POOL_SIZE = 64

NO_ROUTE_BODY = ("503 Service Unavailable\\n\\nNo service answers at this host name. "
                 "Check the name, or run 'slipstream status' to list the services and URLs.\\n")
NO_SERVER_BODY = ("503 Service Unavailable\\n\\nThis service has no instance ready to take "
                  "requests. Run 'slipstream status' to see its deploys and instances.\\n")


def backend_names(pool_size: int) -> list[str]:
    """Names of the pre-declared backends: ``be_00`` ... (zero-padded to a common width)."""
    if not 1 <= pool_size <= 10000:
        raise InvalidInput(f"proxy backend pool size {pool_size} is not between 1 and 10000")
    width = max(2, len(str(pool_size - 1)))
    return [f"be_{i:0{width}d}" for i in range(pool_size)]


def plan_backends(services: Iterable[str], previous: Mapping[str, str], pool_size: int,
                  taken: Iterable[str] = ()) -> dict[str, str]:
    """Give each service a backend: its ``previous`` one if still free, else the first free one.

    ``taken`` lists backends that must not be handed out (e.g. held by services not in
    ``services``). Raises :class:`Conflict` when the pool has no free backend left.
    """
    pool = backend_names(pool_size)
    valid = set(pool)
    used = set(taken)
    plan: dict[str, str] = {}
    wanted = list(dict.fromkeys(services))
    for service in wanted:
        backend = previous.get(service)
        if backend in valid and backend not in used:
            plan[service] = backend
            used.add(backend)
    free = (b for b in pool if b not in used)
    for service in wanted:
        if service not in plan:
            backend = next(free, None)
            if backend is None:
                raise Conflict(f"all {pool_size} proxy backends are in use; cannot route "
                               f"service {service}",
                               "remove unused services, or raise the proxy pool size")
            plan[service] = backend
            used.add(backend)
    return plan


def render_hosts_map(routes: Sequence[Route], assignment: Mapping[str, str]) -> str:
    """The hosts map: one ``<host> <backend>`` line per routed host, sorted by host."""
    lines = sorted(f"{host} {assignment[r.service]}" for r in routes for host in r.hosts)
    return "".join(line + "\n" for line in lines)


def render_services_map(assignment: Mapping[str, str]) -> str:
    """The services map: one ``<backend> <service>`` line per assigned backend, sorted."""
    lines = sorted(f"{backend} {service}" for service, backend in assignment.items())
    return "".join(line + "\n" for line in lines)


def render_bind(bind_host: str, http_port: int) -> str:
    """The ``bind`` address for HAProxy (IPv6 addresses in brackets)."""
    try:
        addr = ipaddress.ip_address(bind_host)
    except ValueError:
        raise InvalidInput(f"bind address {bind_host!r} is not an IP address",
                           "use 127.0.0.1, or 0.0.0.0 to listen on every interface") from None
    host = f"[{addr}]" if addr.version == 6 else str(addr)
    return f"{host}:{http_port}"


def render_config(*, proxy_dir: Path, http_port: int, bind_host: str, routes: Sequence[Route],
                  assignment: Mapping[str, str], pool_size: int = DEFAULT_POOL_SIZE) -> str:
    """Render ``haproxy.cfg``: the frontend, the no-route backend and the backend pool.

    Servers of ``routes`` are written into their backend; "drain" and "maint" servers are written
    ``disabled`` (a fresh process has no requests to drain; the caller sets drain at runtime).
    """
    by_backend = {assignment[r.service]: r for r in routes}
    out = [
        "# Rendered by slipstream (proxy/config.py) at each start of this HAProxy. Routes and",
        "# servers then change at runtime through the admin socket, never by editing this file.",
        "global",
        f"    stats socket {proxy_dir / 'admin.sock'} mode 600 level admin",
        "    stats timeout 10s",
        "    nbthread 2",
        "    maxconn 4096",
        "    # fail to start if another program holds the port, instead of sharing it",
        "    noreuseport",
        "    hard-stop-after 10s",
        "",
        "defaults",
        "    mode http",
        "    option http-keep-alive",
        "    option forwardfor",
        "    http-reuse safe",
        "    retries 3",
        "    option redispatch 1",
        "    # a request on a connection that an instance dropped (crash, exit) is retried on another",
        "    # server; beyond connection failures only for idempotent methods (see frontend)",
        "    retry-on conn-failure empty-response",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout http-request 10s",
        "    timeout queue 5s",
        '    http-error status 503 content-type "text/plain; charset=utf-8" '
        f'string "{NO_SERVER_BODY}"',
        "",
        "frontend http",
        f"    bind {render_bind(bind_host, http_port)}",
        "    http-request set-header X-Forwarded-Proto http",
        "    http-request disable-l7-retry if !METH_GET !METH_HEAD !METH_OPTIONS",
        "    http-request set-var(txn.backend) "
        f"req.hdr(host),host_only,lower,map({proxy_dir / 'hosts.map'},{NO_ROUTE})",
        "    # names the service of each request (for access logs); also loads services.map",
        "    http-request set-var(txn.service) "
        f"var(txn.backend),map({proxy_dir / 'services.map'},-)",
        "    use_backend %[var(txn.backend)]",
        f"    default_backend {NO_ROUTE}",
        "",
        f"backend {NO_ROUTE}",
        f'    http-request return status 503 content-type "text/plain; charset=utf-8" '
        f'string "{NO_ROUTE_BODY}"',
    ]
    for backend in backend_names(pool_size):
        out += ["", f"backend {backend}", "    balance roundrobin"]
        route = by_backend.get(backend)
        for server in route.servers if route else ():
            disabled = "" if server.admin == "ready" else " disabled"
            out.append(f"    server {server.name} 127.0.0.1:{server.port}{disabled}")
    return "\n".join(out) + "\n"
