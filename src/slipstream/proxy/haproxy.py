"""The proxy boundary: one HAProxy process, changed only through its admin socket.

Why: measured on this machine, a runtime-API switch (``set server ... state``) applied in ~0.5 ms
with zero failed requests under keep-alive load, while every nginx/Caddy reload dropped ~12
keep-alive requests. So after the start nothing here reloads or restarts HAProxy.

Lifecycle of the proxy:

1. ``start(routes)``: settle the private listener ports (``private.json``, see ``private.py``).
   If the pidfile names a live HAProxy started from our config (the daemon restarted), adopt it
   untouched. Otherwise check the ports, render ``haproxy.cfg`` and the two map files with
   ``routes``, their servers already in server slots (see ``config.py``), and launch ``haproxy
   -D``; every route answers at once.
2. Make the live state include ``routes``: hosts are set as given; missing servers are added in
   their given state. An adopted process keeps the states of servers it already has (it knows
   about drains in progress); a freshly started one gets "drain" servers set to drain. After an
   adoption the slot records in ``backends.json`` are rewritten from the live state.
3. Runtime changes, each one checked round trip on the admin socket after a read of the live
   state: ``set_route``/``remove_route`` edit the maps (a service borrows a pre-declared backend,
   recorded in services.map and mirrored in ``backends.json``); ``add_server`` records the server
   in a free slot of the service's backend and points the slot at the instance, in maint;
   ``switch`` is the flip (all ``ready`` then all ``drain``, one line; with ``fallback`` the
   drained servers also go into the backend's backup slots first, so a request that a dying new
   instance refuses or drops is replayed on them, until ``release_fallback``); ``remove_server`` puts
   the slot in maint, waits (without blocking other calls) until its last request has finished,
   then points it back at the placeholder and frees it. ``set_private_route`` gives a private
   (TCP) service one of the pre-declared loopback listeners instead of host names; its servers
   are then changed exactly like an HTTP service's.
4. ``servers()``/``routes()`` read the states back from the live process and name the slots from
   ``backends.json`` where its record agrees with the live port (see ``slots.py``), so a
   restarted daemon reconciles against what HAProxy really does.
5. ``stop()``: soft stop (SIGUSR1: listeners close, requests finish), bounded, then SIGTERM.

Choices (checked against HAProxy 2.6.12 here): instances sit in *pre-declared server slots*
whose address is changed at runtime (``set server be/s addr 127.0.0.1 port N``), not in 2.6
dynamic servers (``add server``): HAProxy 2.6 keeps no idle connection to a dynamic server, so
every request opened a new connection to the app and reset it afterwards (200 requests, 200
upstream connections and as many ``ConnectionResetError`` lines in a Python app's log), while a
slot keeps its connections alive (200 requests, 1 connection). Putting a slot in maint closes its
idle connections, so a freed slot reused for another instance never sends a request to the old
one (tested). The price is a fixed capacity: ``slots`` servers per service (old and new
instances together during a deploy) and ``pool_size`` services. The process runs plain ``-D``
(no master-worker): nothing ever reloads it, so a master would only add a process.

Files under ``proxy_dir``: haproxy.cfg, haproxy.pid, admin.sock, hosts.map, services.map,
backends.json, private.json. HAProxy's own limits: server names are ``[A-Za-z0-9_.-]``,
upstreams are always 127.0.0.1, and hosts match exactly (no wildcards).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from slipstream.errors import Conflict, InvalidInput, NotFound, Unavailable
from slipstream.proxy import process
from slipstream.proxy.admin import AdminClient
from slipstream.proxy.config import (
    DEFAULT_BACKUP_SLOTS,
    DEFAULT_POOL_SIZE,
    DEFAULT_SLOTS,
    FREE_PORT,
    backend_names,
    backup_slot_names,
    listener_name,
    parse_layout,
    plan_backends,
    plan_private,
    plan_slots,
    private_names,
    render_bind,
    render_config,
    render_hosts_map,
    render_services_map,
    slot_names,
)
from slipstream.proxy.model import Route, ServerState, check_admin, check_port, check_server_name, check_service
from slipstream.proxy.parse import parse_map, parse_servers_state, parse_stat_sessions
from slipstream.proxy.private import (
    DEFAULT_PRIVATE_POOL,
    check_free,
    check_ports,
    extend_ports,
    load_ports,
    ports_in_config,
    save_ports,
)
from slipstream.proxy.process import ProxyUser
from slipstream.proxy.slots import (
    Live,
    Records,
    Slot,
    build_slots,
    live_records,
    load_records,
    save_records,
    write_atomic,
)

# Characters HAProxy's config (map paths, socket path) and CLI take without quoting.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./@+-]+$")
# HAProxy binds "<socket>.<pid>.tmp" first; sun_path holds 108 bytes.
_MAX_SOCKET_PATH = 95


class Proxy:
    """Slipstream's HAProxy: start/adopt/stop it and change routes and servers at runtime."""

    def __init__(
        self,
        proxy_dir: Path,
        http_port: int,
        bind_host: str = "127.0.0.1",
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        slots: int = DEFAULT_SLOTS,
        haproxy: str = "haproxy",
        timeout: float = 5.0,
        private_pool: int = DEFAULT_PRIVATE_POOL,
        private_ports: Sequence[int] | None = None,
        access_log: Path | None = None,
        run_as: ProxyUser | None = None,
        backup_slots: int = DEFAULT_BACKUP_SLOTS,
    ) -> None:
        self.access_log = access_log  # a unix datagram socket HAProxy sends access lines to
        self.run_as = run_as  # the unprivileged user HAProxy drops to (None: it stays who started it)
        self.proxy_dir = Path(proxy_dir).absolute()
        if not _SAFE_PATH.fullmatch(str(self.proxy_dir)):
            raise InvalidInput(
                f"proxy directory {self.proxy_dir} contains characters HAProxy's "
                "config cannot hold (spaces, quotes, ';', ',', '#')",
                "choose a SLIPSTREAM_HOME made of letters, digits and '/._-'",
            )
        self.http_port = check_port(http_port, "http port")
        render_bind(bind_host, http_port)  # validates the address
        self.bind_host = bind_host
        self.pool_size = pool_size
        self.pool = backend_names(pool_size)
        self.slots = slots
        self.slot_names = slot_names(slots)
        self.backup_slots = backup_slots
        self.backup_names = backup_slot_names(backup_slots)
        self.private_pool = private_names(private_pool)  # pbe_00 ...: one per TCP listener
        self._given_ports = None if private_ports is None else check_ports(private_ports, private_pool, self.http_port)
        self._ports: list[int] | None = None  # settled by start()
        self.haproxy = haproxy
        self.config_path = self.proxy_dir / "haproxy.cfg"
        self.pidfile = self.proxy_dir / "haproxy.pid"
        self.socket_path = self.proxy_dir / "admin.sock"
        self.hosts_map = self.proxy_dir / "hosts.map"
        self.services_map = self.proxy_dir / "services.map"
        self.assignment_file = self.proxy_dir / "backends.json"
        self.private_file = self.proxy_dir / "private.json"
        if len(str(self.socket_path).encode()) > _MAX_SOCKET_PATH:
            raise InvalidInput(
                f"admin socket path {self.socket_path} is longer than "
                f"{_MAX_SOCKET_PATH} bytes, too long for a unix socket",
                "choose a shorter SLIPSTREAM_HOME",
            )
        self._admin = AdminClient(self.socket_path, timeout)
        self._timeout = timeout
        self._lock = threading.RLock()

    # Process ---------------------------------------------------------------------------------
    def start(self, routes: Sequence[Route] = ()) -> None:
        """Start HAProxy (or adopt the one already running) and make it include ``routes``."""
        routes = tuple(routes)
        _check_routes(routes)
        plan_slots(routes, self.slots)  # every route fits its backend
        with self._lock:
            self.proxy_dir.mkdir(parents=True, exist_ok=True)
            fresh = process.find_running(self.pidfile, self.config_path) is None
            if self.run_as is not None and self.access_log is not None:
                process.open_access_log(self.access_log, self.run_as.gid)
            ports = self._settle_ports(fresh)
            if fresh:
                self._launch(routes)
            else:
                self._check_adoptable()
            if ports != load_ports(self.private_file):
                save_ports(self.private_file, ports)
            self._include(routes, fresh)

    def stop(self, grace: float = 10.0) -> None:
        """Stop HAProxy gracefully (in-flight requests finish, up to ``grace`` s)."""
        with self._lock:
            pid = process.find_running(self.pidfile, self.config_path)
            if pid is not None:
                process.terminate(pid, grace)
            self.pidfile.unlink(missing_ok=True)
            self.socket_path.unlink(missing_ok=True)

    def running(self) -> bool:
        """True while the HAProxy started from this proxy directory is alive."""
        return self.pid() is not None

    def pid(self) -> int | None:
        """The pid of the HAProxy started from this proxy directory, or None."""
        return process.find_running(self.pidfile, self.config_path)

    # Routes ----------------------------------------------------------------------------------
    def set_route(self, service: str, hosts: Sequence[str]) -> None:
        """Route exactly ``hosts`` to ``service`` (created or replaced); no reload."""
        wanted = Route(service, tuple(hosts)).hosts
        with self._lock:
            live = self._read(service, sessions=False)
            commands: list[str] = []
            backend = live.services.get(service)
            if backend in self.private_pool:
                raise Conflict(
                    f"service {service} is a private service (port "
                    f"{self._port_of(backend)}); it cannot have host names",
                    "remove its private route first",
                )
            if backend is None:
                backend = self._allocate(service)
                commands.append(f"add map {self.services_map} {backend} {service}")
            for host in wanted:
                owner_backend = live.hosts.get(host)
                if owner_backend == backend:
                    continue
                owner = live.service_of(owner_backend) if owner_backend else None
                if owner is not None:
                    raise Conflict(f"host {host} is already routed to service {owner}", f"remove it from {owner} first")
                if owner_backend is not None:  # a leftover entry of no service
                    commands.append(f"del map {self.hosts_map} {host}")
                commands.append(f"add map {self.hosts_map} {host} {backend}")
            commands += [f"del map {self.hosts_map} {host}" for host in live.hosts_of(backend) if host not in wanted]
            if commands:
                self._admin.send(commands)
            if backend not in live.services.values():
                self._save(services={**live.services, service: backend})

    def set_private_route(self, service: str) -> int:
        """Give ``service`` a private TCP listener (idempotent) and return its stable port.

        The service is then reached at ``127.0.0.1:<port>`` only; its servers are added and
        switched as for an HTTP service. No reload. All listeners in use -> :class:`Conflict`.
        """
        return self._set_private_route(service, None)

    def remove_route(self, service: str) -> None:
        """Stop routing ``service``: drop its hosts, free its servers' slots and its backend
        (or its private listener)."""
        check_service(service)
        with self._lock:
            live = self._read(service, sessions=False)
            backend = live.services.get(service)
            if backend is None:
                return
            hosts = live.hosts_of(backend)
            if hosts:
                self._admin.send([f"del map {self.hosts_map} {host}" for host in hosts])
        for server in live.servers_of(backend):
            self.remove_server(service, server.name)
        with self._lock:
            live = self._read(service, hosts=False, sessions=False)
            if live.services.get(service) != backend:
                return
            if live.servers_of(backend):  # a server was added meanwhile
                raise Conflict(
                    f"service {service} got new servers while its route was removed", "remove the route again"
                )
            self._admin.send([f"del map {self.services_map} {backend}"])
            self._save(services={s: b for s, b in live.services.items() if s != service})

    # Servers ---------------------------------------------------------------------------------
    def add_server(self, service: str, name: str, port: int) -> None:
        """Put an instance into a free slot of ``service``'s backend, in "maint" (no traffic)."""
        check_service(service)
        check_server_name(name)
        check_port(port, f"port of server {name}")
        if name in self.slot_names:
            raise InvalidInput(
                f"server name {name} is reserved for the proxy's server slots", "use slipstream ids such as 'd12-1'"
            )
        if port == FREE_PORT:
            raise InvalidInput(
                f"port {FREE_PORT} of server {name} marks a free proxy slot", "run the instance on another port"
            )
        with self._lock:
            live = self._read(service, hosts=False, sessions=False)
            commands: list[str] = []
            backend = live.services.get(service)
            if backend is None:
                backend = self._allocate(service)
                commands.append(f"add map {self.services_map} {backend} {service}")
                live = self._read(service=None, hosts=False, sessions=False)
            existing = live.find(backend, name)
            if existing is not None and existing.server is not None:
                if existing.server.port == port:
                    return  # already there: keep its state
                raise Conflict(
                    f"server {name} of {service} already exists on port {existing.server.port}, not {port}",
                    "remove it first",
                )
            slot = live.free_slot(backend)
            if slot is None:
                raise Conflict(
                    f"all {self.slots} proxy server slots of service {service} are in use; cannot add server {name}",
                    "remove drained servers first, or run fewer instances (a deploy "
                    "needs slots for the old and the new instances together)",
                )
            services, records = load_records(self.assignment_file)
            records[f"{backend}/{slot}"] = (name, port)  # recorded before HAProxy knows it
            self._save(services={**live.services, service: backend}, slots=records)
            commands += [
                f"set server {backend}/{slot} state maint",
                f"set server {backend}/{slot} addr 127.0.0.1 port {port}",
            ]
            self._admin.send(commands)

    def set_state(self, service: str, name: str, admin: str) -> None:
        """Set one server of ``service`` to "ready", "drain" or "maint"."""
        check_admin(admin)
        with self._lock:
            slots = self._require(self._read(service, hosts=False, sessions=False), service, [name])
            self._admin.send([f"set server {slots[name]} state {admin}"])

    def switch(self, service: str, ready: Sequence[str], drain: Sequence[str], fallback: Sequence[str] = ()) -> None:
        """The flip: one admin round trip sets all ``ready`` servers ready, then ``drain`` drain.

        ``fallback`` servers (drained ones) are put into the backend's backup slots first, ready:
        while no ``ready`` server can take a request (each is marked DOWN by the first connection
        it refuses or drops), HAProxy sends it, and replays the dropped ones, to them. They stay
        until :meth:`release_fallback`; any earlier backups of the backend are replaced. Beyond the
        backup slots (8 by default) the remaining ``fallback`` servers are only drained.
        """
        ready, drain, fallback = list(ready), list(drain), list(fallback)
        both = set(ready) & set(drain)
        if both:
            raise InvalidInput(f"servers {', '.join(sorted(both))} cannot be both ready and drain")
        with self._lock:
            live = self._read(service, hosts=False, sessions=False)
            slots = self._require(live, service, ready + drain + fallback)
            backend = live.services[service]
            ports = {server.name: server.port for server in live.servers_of(backend)}
            commands = self._release_commands(backend) if fallback else []
            for slot, name in zip(self.backup_names, fallback, strict=False):
                commands += [
                    f"set server {backend}/{slot} addr 127.0.0.1 port {ports[name]}",
                    f"set server {backend}/{slot} state ready",
                ]
            commands += [f"set server {slots[n]} state ready" for n in ready]
            commands += [f"set server {slots[n]} state drain" for n in drain]
            if commands:
                self._admin.send(commands)

    def release_fallback(self, service: str) -> None:
        """Empty the backup slots of ``service``'s backend (the end of a settle window)."""
        check_service(service)
        with self._lock:
            live = self._read(service, hosts=False, sessions=False)
            backend = live.services.get(service)
            if backend is not None:
                commands = self._release_commands(backend)
                if commands:
                    self._admin.send(commands)

    def _release_commands(self, backend: str) -> list[str]:
        """The commands freeing every held backup slot of ``backend`` (maint, placeholder)."""
        if not self.backup_names:
            return []
        backups = set(self.backup_names)
        (answer,) = self._admin.send([f"show servers state {backend}"], check=False)
        held = [r.name for r in parse_servers_state(answer) if r.name in backups and r.port != FREE_PORT]
        return [
            line
            for slot in held
            for line in (
                f"set server {backend}/{slot} state maint",
                f"set server {backend}/{slot} addr 127.0.0.1 port {FREE_PORT}",
            )
        ]

    def remove_server(self, service: str, name: str, timeout: float = 10.0) -> None:
        """Put a server in maint; free its slot once its last request ends (``timeout`` s at most).

        The wait holds no lock: other services can be switched meanwhile.
        """
        check_service(service)
        check_server_name(name)
        with self._lock:
            held = self._held(service, name)
            if held is None:
                return
            self._admin.send([f"set server {held.backend}/{held.slot} state maint"])
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                now = self._held(service, name)
                server = now.server if now is not None and now.slot == held.slot else None
                if now is None or server is None:
                    return  # removed by another call meanwhile
                if server.admin != "maint":
                    raise Conflict(
                        f"server {name} of {service} was set {server.admin} while it was being removed",
                        "remove it again",
                    )
                if server.sessions == 0:
                    self._free(now)
                    return
            if time.monotonic() >= deadline:
                raise Conflict(
                    f"server {name} of {service} still has requests in flight after {timeout:g} s",
                    "it stays in maint; call remove_server again later",
                )
            time.sleep(0.05)

    def servers(self, service: str) -> list[ServerState]:
        """The servers of ``service`` as the live HAProxy has them (state and sessions)."""
        with self._lock:
            live = self._read(service, hosts=False)
            self._require(live, service, [])
            return live.servers_of(live.services[service])

    def routes(self) -> list[Route]:
        """Every route with its hosts and servers, read back from the live HAProxy."""
        with self._lock:
            live = self._read()
            return [
                Route(service, (), tuple(live.servers_of(backend)), kind="private", port=self._port_of(backend))
                if backend in self.private_pool
                else Route(service, tuple(live.hosts_of(backend)), tuple(live.servers_of(backend)))
                for service, backend in sorted(live.services.items())
            ]

    def private_ports(self) -> dict[str, int]:
        """Each private service's listener port, from the services map alone: one small round trip
        where ``routes()`` reads every slot of every backend (~0.4 s with 256 backends here)."""
        with self._lock:
            answer = self._admin.send([f"show map {self.services_map}"], check=False)[0]
            return {svc: self._port_of(be) for be, svc in parse_map(answer).items() if be in self.private_pool}

    # Internals -------------------------------------------------------------------------------
    def _read(self, service: str | None = None, *, hosts: bool = True, sessions: bool = True) -> Live:
        """Read the maps, then the slots of ``service``'s backend (or of every backend if None).

        Every backend costs about 200 bytes of ``show stat`` per slot, so the calls that concern
        one service read only its backend (two small round trips).
        """
        maps = [f"show map {self.services_map}"]
        if hosts:
            maps.append(f"show map {self.hosts_map}")
        everything = self._slot_queries("", sessions) if service is None else []
        answers = self._admin.send(maps + everything, check=False)
        pool = set(self.pool) | set(self.private_pool)
        services = {svc: be for be, svc in parse_map(answers[0]).items() if be in pool}
        host_map = {h: be for h, be in parse_map(answers[1]).items() if be in pool} if hosts else {}
        rest = answers[len(maps) :]
        if service is not None:
            backend = services.get(service)
            if backend is None:
                return Live(services, host_map, {})
            rest = self._admin.send(self._slot_queries(backend, sessions), check=False)
        scur = parse_stat_sessions(rest[1]) if sessions else {}
        _, records = load_records(self.assignment_file)
        slots = build_slots(
            parse_servers_state(rest[0]), scur, records, [*self.pool, *self.private_pool], self.slot_names
        )
        return Live(services, host_map, slots)

    @staticmethod
    def _slot_queries(backend: str, sessions: bool) -> list[str]:
        """The ``show`` commands reading one backend's slots (every backend if ``backend`` is "")."""
        commands = [f"show servers state {backend}".rstrip()]
        if sessions:
            commands.append(f"show stat {backend or -1} 4 -1")
        return commands

    def _held(self, service: str, name: str) -> Slot | None:
        """The slot holding server ``name`` of ``service`` right now (with sessions), or None."""
        live = self._read(service, hosts=False)
        backend = live.services.get(service)
        return live.find(backend, name) if backend is not None else None

    def _free(self, held: Slot) -> None:
        """Point a drained slot back at the placeholder and drop its record."""
        target = f"{held.backend}/{held.slot}"
        self._admin.send([f"set server {target} state maint", f"set server {target} addr 127.0.0.1 port {FREE_PORT}"])
        services, records = load_records(self.assignment_file)
        records.pop(target, None)
        self._save(services=services, slots=records)

    def _allocate(self, service: str) -> str:
        """Pick a free backend for ``service`` (its previous one if free); Conflict when full."""
        live = self._read(sessions=False)
        taken = set(live.services.values()) | live.occupied() | set(live.hosts.values())
        previous, _ = load_records(self.assignment_file)
        return plan_backends([service], previous, self.pool_size, taken)[service]

    def _require(self, live: Live, service: str, names: Sequence[str]) -> dict[str, str]:
        """``{name: "backend/slot"}`` for ``names``; NotFound if the service or a name is missing."""
        check_service(service)
        for name in names:
            check_server_name(name)
        backend = live.services.get(service)
        if backend is None:
            raise NotFound(f"service {service} has no route in the proxy", "set its route or add a server first")
        found = {n: live.find(backend, n) for n in names}
        missing = [n for n, slot in found.items() if slot is None]
        if missing:
            have = [s.name for s in live.servers_of(backend)]
            raise NotFound(
                f"service {service} has no server {', '.join(missing)} in the proxy",
                f"known servers: {', '.join(have) or 'none'}",
            )
        return {n: f"{slot.backend}/{slot.slot}" for n, slot in found.items() if slot is not None}

    def _launch(self, routes: tuple[Route, ...]) -> None:
        """Render the files with ``routes`` and start a new HAProxy; wait for its socket."""
        process.check_port_free(self.bind_host, self.http_port)
        previous, _ = load_records(self.assignment_file)
        ports = self._listener_ports()
        owners = {self._port_of(b): s for s, b in previous.items() if b in self.private_pool}
        check_free(ports, owners, self.private_file)
        self.pidfile.unlink(missing_ok=True)
        self.socket_path.unlink(missing_ok=True)
        private = [r for r in routes if r.kind == "private"]
        assignment = plan_backends([r.service for r in routes if r.kind == "http"], previous, self.pool_size)
        assignment |= plan_private(
            [r.service for r in private], previous, ports, pinned={r.service: r.port for r in private if r.port}
        )
        records = {
            f"{assignment[service]}/{slot}": (server.name, server.port)
            for service, held in plan_slots(routes, self.slots).items()
            for slot, server in held.items()
        }
        write_atomic(self.hosts_map, render_hosts_map(routes, assignment))
        write_atomic(self.services_map, render_services_map(assignment))
        write_atomic(
            self.config_path,
            render_config(
                proxy_dir=self.proxy_dir,
                http_port=self.http_port,
                bind_host=self.bind_host,
                routes=routes,
                assignment=assignment,
                pool_size=self.pool_size,
                slots=self.slots,
                private_ports=ports,
                access_log=self.access_log,
                run_as=self.run_as.name if self.run_as is not None else None,
                backup_slots=self.backup_slots,
            ),
        )
        self._save(services=assignment, slots=records)
        pid = process.launch(self.haproxy, self.config_path, self.pidfile, self.http_port)
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                self._admin.send(["show info"], check=False)
                break
            except Unavailable:
                if time.monotonic() >= deadline:
                    process.terminate(pid, grace=1)
                    raise
                time.sleep(0.02)

    def _check_adoptable(self) -> None:
        """Refuse to adopt an HAProxy whose ports, backend pools or slots differ from ours."""
        try:
            text = self.config_path.read_text()
        except OSError:
            text = ""
        expected = {"frontend http": [render_bind(self.bind_host, self.http_port)]}
        layout = [*self.slot_names, *(f"{b} backup" for b in self.backup_names)]
        expected |= {f"backend {b}": layout for b in [*self.pool, *self.private_pool]}
        expected |= {
            f"frontend {listener_name(b)}": [f"127.0.0.1:{port}"]
            for b, port in zip(self.private_pool, self._listener_ports(), strict=False)
        }
        declared = {
            k: v for k, v in parse_layout(text).items() if k.split()[1].startswith(("http", "be_", "pbe_", "priv_"))
        }
        if declared != expected:
            pid = self.pid()
            raise Conflict(
                f"the running haproxy (pid {pid}) was started with another port, "
                "address, backend pool or slot count, or other private service "
                "ports, than this proxy",
                "run 'slipstream down' first, then start again",
            )

    def _include(self, routes: tuple[Route, ...], fresh: bool) -> None:
        """Make the live state include ``routes`` (see step 2 of the lifecycle above)."""
        for route in routes:
            live = self._read(route.service, sessions=False)
            backend = live.services.get(route.service)
            if route.kind == "private":
                self._set_private_route(route.service, route.port)
                live = self._read(route.service, sessions=False)
                backend = live.services[route.service]
            elif backend is None or live.hosts_of(backend) != sorted(route.hosts):
                self.set_route(route.service, route.hosts)
                live = self._read(route.service, sessions=False)
                backend = live.services[route.service]
            have = {s.name: s for s in live.servers_of(backend)}
            for server in route.servers:
                current = have.get(server.name)
                if current is None:
                    self.add_server(route.service, server.name, server.port)
                    if server.admin != "maint":
                        self.set_state(route.service, server.name, server.admin)
                elif fresh and current.admin != server.admin:
                    self.set_state(route.service, server.name, server.admin)
        if not fresh:  # believe the live process: drop records it does not confirm
            live = self._read(sessions=False)
            self._save(services=live.services, slots=live_records(live))

    def _set_private_route(self, service: str, port: int | None) -> int:
        """Assign ``service`` a listener (the one on ``port`` if given) and return its port."""
        check_service(service)
        with self._lock:
            live = self._read(sessions=False)
            backend = live.services.get(service)
            if backend in self.private_pool:
                have = self._port_of(backend)
                if port is not None and port != have:
                    raise Conflict(
                        f"private service {service} listens on 127.0.0.1:{have}, not {port}",
                        "remove its route first to move it",
                    )
                return have
            if backend is not None:
                raise Conflict(
                    f"service {service} is routed by host name, not as a private service", "remove its route first"
                )
            previous, _ = load_records(self.assignment_file)
            taken = set(live.services.values()) | live.occupied()
            backend = plan_private(
                [service], previous, self._listener_ports(), taken, pinned=None if port is None else {service: port}
            )[service]
            self._admin.send([f"add map {self.services_map} {backend} {service}"])
            self._save(services={**live.services, service: backend})
            return self._port_of(backend)

    def _settle_ports(self, fresh: bool) -> list[int]:
        """The listener ports for this start: given, else recorded, else (adopting a running
        HAProxy whose record is lost) its config's, else new free ones; see ``private.py``."""
        saved = load_ports(self.private_file)
        if self._given_ports is not None:
            ports = self._given_ports
        else:
            if saved is None and not fresh:
                try:
                    saved = ports_in_config(self.config_path.read_text())
                except OSError:
                    saved = None
            ports = extend_ports(saved or [], len(self.private_pool), [self.http_port])
        if self.http_port in ports:
            raise Conflict(
                f"HTTP port {self.http_port} is also a private service port (recorded in {self.private_file})",
                "choose another HTTP port, or delete that file to pick new private ports (private services then move)",
            )
        self._ports = ports
        return ports

    def _listener_ports(self) -> list[int]:
        """The listener ports settled by ``start`` (or recorded in ``private.json``)."""
        if self._ports is None:
            saved = load_ports(self.private_file) or []
            if len(saved) < len(self.private_pool):
                raise Unavailable(
                    f"the private service ports of {self.proxy_dir} are not known yet", "start the proxy first"
                )
            self._ports = saved[: len(self.private_pool)]
        return self._ports

    def _port_of(self, backend: str) -> int:
        """The listener port of private backend ``backend``."""
        return self._listener_ports()[self.private_pool.index(backend)]

    def _save(self, *, services: dict[str, str], slots: Records | None = None) -> None:
        """Rewrite ``backends.json`` with ``services`` and ``slots`` (kept as they are if None)."""
        if slots is None:
            _, slots = load_records(self.assignment_file)
        save_records(self.assignment_file, services, slots)


def _check_routes(routes: Sequence[Route]) -> None:
    """Reject routes naming one service twice or giving one host to two services."""
    seen: dict[str, str] = {}
    services = [r.service for r in routes]
    if len(set(services)) != len(services):
        raise InvalidInput(f"routes name a service twice: {', '.join(services)}")
    for route in routes:
        for host in route.hosts:
            if host in seen:
                raise Conflict(f"host {host} is routed to both {seen[host]} and {route.service}")
            seen[host] = route.service
