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

Private services (Render's ``pserv``) speak any TCP protocol, so no Host header can route them:
each borrows one of K pre-declared TCP listeners instead, ``frontend priv_00`` on a fixed loopback
port (always 127.0.0.1, whatever the HTTP bind address) feeding ``backend pbe_00``, which has the
same server slots as an HTTP backend. services.map records ``pbe_00 db`` like ``be_03 web``; the
listener's port never changes, so the service keeps its address across deploys and restarts.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from slipstream.errors import Conflict, InvalidInput
from slipstream.logs.access import ACCESS_LOG_FORMAT
from slipstream.proxy.model import Route, ServerState, check_port

NO_ROUTE = "no_route"  # backend answering 503 for a host no service claims
DEFAULT_POOL_SIZE = 64  # backends: at most this many routed services
DEFAULT_SLOTS = 16  # server slots per backend: old + new instances during a deploy
DEFAULT_BACKUP_SLOTS = 8  # backup slots per backend: the old release again during a settle window
# Every slot (default-server): a TCP check (a free or held-back slot is in maint, so unchecked), and one refused or
# dropped connection marks the server DOWN at once (back UP at the first check that connects), so
# the retry of that request goes to another server, or to the backups when no active one is left.
SLOT_CHECK = "check inter 5s downinter 100ms rise 1 observe layer4 error-limit 1 on-error mark-down"
FREE_PORT = 1  # a free slot points at 127.0.0.1:1 (nothing listens there)

NO_ROUTE_BODY = (
    "503 Service Unavailable\\n\\nNo service answers at this host name. "
    "Check the name, or run 'slipstream status' to list the services and URLs.\\n"
)
NO_SERVER_BODY = (
    "503 Service Unavailable\\n\\nThis service has no instance ready to take "
    "requests. Run 'slipstream status' to see its deploys and instances.\\n"
)


def backend_names(pool_size: int) -> list[str]:
    """Names of the pre-declared backends: ``be_00`` ... (zero-padded to a common width)."""
    if not 1 <= pool_size <= 10000:
        raise InvalidInput(f"proxy backend pool size {pool_size} is not between 1 and 10000")
    width = max(2, len(str(pool_size - 1)))
    return [f"be_{i:0{width}d}" for i in range(pool_size)]


def private_names(count: int) -> list[str]:
    """Names of the private backends: ``pbe_00`` ... (zero-padded); ``count`` may be 0."""
    if not 0 <= count <= 1000:
        raise InvalidInput(f"proxy private listener pool size {count} is not between 0 and 1000")
    width = max(2, len(str(count - 1)))
    return [f"pbe_{i:0{width}d}" for i in range(count)]


def listener_name(backend: str) -> str:
    """The TCP frontend feeding private backend ``backend``: ``pbe_03`` -> ``priv_03``."""
    return "priv_" + backend.removeprefix("pbe_")


def slot_names(slots: int) -> list[str]:
    """Names of the server slots of every backend: ``s00`` ... (zero-padded to a common width)."""
    if not 1 <= slots <= 1000:
        raise InvalidInput(f"proxy server slots per backend {slots} is not between 1 and 1000")
    width = max(2, len(str(slots - 1)))
    return [f"s{i:0{width}d}" for i in range(slots)]


def backup_slot_names(count: int) -> list[str]:
    """Names of the backup slots of every backend: ``b00`` ... (``count`` may be 0)."""
    if not 0 <= count <= 1000:
        raise InvalidInput(f"proxy backup slots per backend {count} is not between 0 and 1000")
    width = max(2, len(str(count - 1)))
    return [f"b{i:0{width}d}" for i in range(count)]


def plan_slots(routes: Sequence[Route], slots: int) -> dict[str, dict[str, ServerState]]:
    """Put each route's servers into the slots of its backend, in order: service -> slot -> server.

    Raises :class:`Conflict` when a route has more servers than a backend has slots.
    """
    names = slot_names(slots)
    plan: dict[str, dict[str, ServerState]] = {}
    for route in routes:
        if len(route.servers) > slots:
            raise Conflict(
                f"service {route.service} has {len(route.servers)} servers but a proxy backend holds at most {slots}",
                "run fewer instances of it (each deploy needs room for the old and the new ones)",
            )
        plan[route.service] = dict(zip(names, route.servers, strict=False))
    return plan


def plan_backends(
    services: Iterable[str], previous: Mapping[str, str], pool_size: int, taken: Iterable[str] = ()
) -> dict[str, str]:
    """Give each service a backend: its ``previous`` one if still free, else the first free one.

    ``taken`` lists backends that must not be handed out (e.g. held by services not in
    ``services``). Raises :class:`Conflict` when the pool has no free backend left.
    """
    plan: dict[str, str] = {}
    full = _fill(list(dict.fromkeys(services)), previous, backend_names(pool_size), set(taken), plan)
    if full is not None:
        raise Conflict(
            f"all {pool_size} proxy backends are in use; cannot route service {full}",
            "remove unused services, or raise the proxy pool size",
        )
    return plan


def plan_private(
    services: Iterable[str],
    previous: Mapping[str, str],
    ports: Sequence[int],
    taken: Iterable[str] = (),
    pinned: Mapping[str, int] | None = None,
) -> dict[str, str]:
    """Give each private service a listener (its ``pbe_`` backend), as :func:`plan_backends`.

    ``ports`` are the listeners' ports in order; ``pinned`` maps a service to the port it must
    keep. Raises :class:`Conflict` when a pinned port is not a listener's or is taken, or when
    every listener is in use.
    """
    pool = private_names(len(ports))
    by_port = dict(zip(ports, pool, strict=False))
    used = set(taken)
    plan: dict[str, str] = {}
    for service, port in (pinned or {}).items():
        backend = by_port.get(port)
        if backend is None:
            raise Conflict(
                f"private service {service} must keep port {port}, which is not one "
                f"of the proxy's private ports ({', '.join(map(str, ports)) or 'none'})",
                "restore the proxy's private.json, or route the service without a port to give it a new one",
            )
        if backend in used or backend in plan.values():
            raise Conflict(
                f"private port {port} wanted by service {service} is already taken",
                "give each private service its own port",
            )
        plan[service] = backend
    used |= set(plan.values())
    wanted = [s for s in dict.fromkeys(services) if s not in plan]
    full = _fill(wanted, previous, pool, used, plan)
    if full is not None:
        raise Conflict(
            f"all {len(ports)} private service ports of the proxy are in use; cannot route private service {full}",
            "remove unused private services, or raise the proxy's private pool size",
        )
    return plan


def _fill(
    wanted: Sequence[str], previous: Mapping[str, str], pool: Sequence[str], used: set[str], plan: dict[str, str]
) -> str | None:
    """Add ``wanted`` to ``plan`` from ``pool`` (previous first); return who found no room."""
    valid = set(pool)
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
                return service
            plan[service] = backend
            used.add(backend)
    return None


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
        raise InvalidInput(
            f"bind address {bind_host!r} is not an IP address", "use 127.0.0.1, or 0.0.0.0 to listen on every interface"
        ) from None
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


def render_backup_slots(names: Sequence[str]) -> list[str]:
    """The backup slots of one backend, all free (a fresh process has no settle window)."""
    return [f"    server {slot} 127.0.0.1:{FREE_PORT} backup disabled" for slot in names]


def render_config(
    *,
    proxy_dir: Path,
    http_port: int,
    bind_host: str,
    routes: Sequence[Route],
    assignment: Mapping[str, str],
    pool_size: int = DEFAULT_POOL_SIZE,
    slots: int = DEFAULT_SLOTS,
    private_ports: Sequence[int] = (),
    access_log: Path | None = None,
    run_as: str | None = None,
    backup_slots: int = DEFAULT_BACKUP_SLOTS,
) -> str:
    """Render ``haproxy.cfg``: the frontend, the no-route backend, the backend pool and one TCP
    listener with its backend per port of ``private_ports``. With ``run_as``, HAProxy drops to
    that user and its group once it has bound its ports and admin socket and read its maps.

    Every backend declares ``slots`` server slots; the servers of ``routes`` fill the first slots
    of their backend (see :func:`plan_slots`), the others stay free.
    """
    names = slot_names(slots)
    backups = backup_slot_names(backup_slots)
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
        *([f"    log {access_log} len 8192 format raw local0 info"] if access_log else []),
        *(
            [
                "    # binds (80/443 too), the admin socket and the maps come first, as root; then this user",
                f"    user {run_as}",
                f"    group {run_as}",
            ]
            if run_as
            else []
        ),
        "",
        "defaults",
        "    mode http",
        "    option http-keep-alive",
        "    # the client's address as HAProxy saw it: a client's own X-Forwarded-For is replaced, never kept",
        "    http-reuse safe",
        # 10, not 3: when an instance dies, the requests already on their way to it come back
        # refused within a millisecond, and HAProxy 2.6 marks the server DOWN (observe layer4)
        # only a little later, so 3 quick retries could all go to the dead server and end in a
        # 503 "SC" that a keep-alive client sees as a closed connection (7 in 500 crash-after-
        # flip deploys, bench/crash_race.py). A refused loopback connect costs ~nothing.
        "    retries 10",
        "    option redispatch 1",
        "    # a request on a connection that an instance dropped (crash, exit) is retried on another",
        "    # server; beyond connection failures only for idempotent methods (see frontend)",
        "    retry-on conn-failure empty-response",
        f"    default-server {SLOT_CHECK}",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    timeout server 60s",
        "    timeout http-request 10s",
        "    timeout queue 5s",
        f'    http-error status 503 content-type "text/plain; charset=utf-8" string "{NO_SERVER_BODY}"',
        "",
        "frontend http",
        f"    bind {render_bind(bind_host, http_port)}",
        "    http-request set-header X-Forwarded-Proto http",
        "    http-request set-header X-Forwarded-For %[src]",
        "    http-request disable-l7-retry if !METH_GET !METH_HEAD !METH_OPTIONS",
        "    http-request set-var(txn.backend) "
        f"req.hdr(host),host_only,lower,map({proxy_dir / 'hosts.map'},{NO_ROUTE})",
        "    # names the service of each request (for access logs); also loads services.map",
        f"    http-request set-var(txn.service) var(txn.backend),map({proxy_dir / 'services.map'},-)",
        "    use_backend %[var(txn.backend)]",
        f"    default_backend {NO_ROUTE}",
        *(["    log global", f'    log-format "{ACCESS_LOG_FORMAT}"'] if access_log else []),
        "",
        f"backend {NO_ROUTE}",
        f'    http-request return status 503 content-type "text/plain; charset=utf-8" string "{NO_ROUTE_BODY}"',
    ]
    for backend in backend_names(pool_size):
        out += ["", f"backend {backend}", "    balance roundrobin"]
        held = by_backend.get(backend, {})
        out += [render_slot(slot, held.get(slot)) for slot in names]
        out += render_backup_slots(backups)
    out += render_private(private_ports, by_backend, names, backups)
    return "\n".join(out) + "\n"


def render_private(
    ports: Sequence[int],
    by_backend: Mapping[str, Mapping[str, ServerState]],
    names: Sequence[str],
    backups: Sequence[str] = (),
) -> list[str]:
    """The config lines of the private listeners: a TCP defaults section, then per port a
    ``priv_NN`` frontend bound to 127.0.0.1 and its ``pbe_NN`` backend of server slots."""
    if not ports:
        return []
    out = [
        "",
        "# Private services: any TCP protocol, one listener each, on loopback only. Long idle",
        "# timeouts (database and queue connections stay open), TCP keep-alives find dead peers.",
        "defaults",
        "    mode tcp",
        "    option clitcpka",
        "    option srvtcpka",
        f"    default-server {SLOT_CHECK}",
        "    timeout connect 5s",
        "    timeout client 24h",
        "    timeout server 24h",
        "    timeout queue 5s",
    ]
    for backend, port in zip(private_names(len(ports)), ports, strict=False):
        out += [
            "",
            f"frontend {listener_name(backend)}",
            "    mode tcp",
            f"    bind 127.0.0.1:{check_port(port, 'private port')}",
            f"    default_backend {backend}",
            "",
            f"backend {backend}",
            "    mode tcp",
            "    balance roundrobin",
            "    retries 3",
            "    option redispatch",
        ]
        held = by_backend.get(backend, {})
        out += [render_slot(slot, held.get(slot)) for slot in names]
        out += render_backup_slots(backups)
    return out


def parse_layout(text: str) -> dict[str, list[str]]:
    """What a rendered ``haproxy.cfg`` declares: each frontend's binds and each backend's slots.

    Keys are ``frontend <name>`` and ``backend <name>``; a backup slot is listed as ``<name>
    backup``. Used to check that a running HAProxy was started with the layout this proxy expects
    before adopting it.
    """
    layout: dict[str, list[str]] = {}
    section: list[str] | None = None
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if not line[0].isspace():
            section = None
            if words[0] in ("frontend", "backend") and len(words) > 1:
                section = layout.setdefault(f"{words[0]} {words[1]}", [])
        elif section is not None and words[0] in ("bind", "server") and len(words) > 1:
            section.append(f"{words[1]} backup" if words[0] == "server" and "backup" in words[3:] else words[1])
    return layout
