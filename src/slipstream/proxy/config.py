"""Pure builders for HAProxy's files: ``haproxy.cfg`` and its two map files.

The config never changes while HAProxy runs. It declares a fixed pool of backends (``be_00`` ...
``be_63``), each with a fixed set of server slots (``s00`` ... ``s15``); a free slot points at
the placeholder ``127.0.0.1:1`` and is ``disabled``. A service borrows one backend, an instance
borrows one slot of it, and two map files hold the routing:

    hosts.map      web.localhost be_03      (Host header, lower case, port removed -> backend)
    services.map   be_03 web                (backend -> service; which backend belongs to whom)

At runtime slipstream edits the maps (``add map``/``del map``) and the slots (``set server ...
addr``, ``set server ... state``). Slots rather than 2.6 dynamic servers (``add server``) because
HAProxy 2.6 keeps no idle connection to a dynamic server: every request opened a new connection
to the app and reset it afterwards (measured: 200 requests, 200 upstream connections; 1 with a
slot). The files are rendered with the routes known at start, their servers already in slots, so
a freshly started HAProxy routes every service it is given.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from slipstream.errors import Conflict, InvalidInput
from slipstream.proxy.model import Route, ServerState

NO_ROUTE = "no_route"           # backend answering 503 for a host no service claims
DEFAULT_POOL_SIZE = 64          # backends: at most this many routed services
DEFAULT_SLOTS = 16              # server slots per backend: old + new instances during a deploy
FREE_PORT = 1                   # a free slot points at 127.0.0.1:1 (nothing listens there)

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


def slot_names(slots: int) -> list[str]:
    """Names of the server slots of every backend: ``s00`` ... (zero-padded to a common width)."""
    if not 1 <= slots <= 1000:
        raise InvalidInput(f"proxy server slots per backend {slots} is not between 1 and 1000")
    width = max(2, len(str(slots - 1)))
    return [f"s{i:0{width}d}" for i in range(slots)]


def plan_slots(routes: Sequence[Route], slots: int) -> dict[str, dict[str, ServerState]]:
    """Put each route's servers into the slots of its backend, in order: service -> slot -> server.

    Raises :class:`Conflict` when a route has more servers than a backend has slots.
    """
    names = slot_names(slots)
    plan: dict[str, dict[str, ServerState]] = {}
    for route in routes:
        if len(route.servers) > slots:
            raise Conflict(f"service {route.service} has {len(route.servers)} servers but a proxy "
                           f"backend holds at most {slots}",
                           "run fewer instances of it (each deploy needs room for the old and "
                           "the new ones)")
        plan[route.service] = dict(zip(names, route.servers))
    return plan


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


def render_slot(slot: str, server: ServerState | None) -> str:
    """One slot's ``server`` line: free (placeholder, disabled) or holding ``server``.

    "drain" and "maint" servers are written ``disabled`` (a fresh process has no requests to
    drain; the caller sets drain at runtime). The slipstream name follows as a comment.
    """
    if server is None:
        return f"    server {slot} 127.0.0.1:{FREE_PORT} disabled"
    disabled = "" if server.admin == "ready" else " disabled"
    return f"    server {slot} 127.0.0.1:{server.port}{disabled}  # {server.name}"


def render_config(*, proxy_dir: Path, http_port: int, bind_host: str, routes: Sequence[Route],
                  assignment: Mapping[str, str], pool_size: int = DEFAULT_POOL_SIZE,
                  slots: int = DEFAULT_SLOTS) -> str:
    """Render ``haproxy.cfg``: the frontend, the no-route backend and the backend pool.

    Every backend declares ``slots`` server slots; the servers of ``routes`` fill the first slots
    of their backend (see :func:`plan_slots`), the others stay free.
    """
    names = slot_names(slots)
    filled = plan_slots(routes, slots)
    by_backend = {assignment[r.service]: filled[r.service] for r in routes}
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
        held = by_backend.get(backend, {})
        out += [render_slot(slot, held.get(slot)) for slot in names]
    return "\n".join(out) + "\n"
