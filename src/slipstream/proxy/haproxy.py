"""The proxy boundary: one HAProxy process, changed only through its admin socket.

Why: measured on this machine, a runtime-API switch (``set server ... state``) applied in ~0.5 ms
with zero failed requests under keep-alive load, while every nginx/Caddy reload dropped ~12
keep-alive requests. So after the start nothing here reloads or restarts HAProxy.

Lifecycle of the proxy:

1. ``start(routes)``: if the pidfile names a live HAProxy started from our config (the daemon
   restarted), adopt it untouched. Otherwise check the port, render ``haproxy.cfg`` and the two map
   files with ``routes`` (see ``config.py``) and launch ``haproxy -D``; every route answers at once.
2. Make the live state include ``routes``: hosts are set as given; missing servers are added in
   their given state. An adopted process keeps the states of servers it already has (it knows
   about drains in progress); a freshly started one gets "drain" servers set to drain.
3. Runtime changes, each one checked round trip on the admin socket after one read of the live
   state: ``set_route``/``remove_route`` edit the maps (a service borrows a pre-declared backend,
   recorded in services.map and mirrored in ``backends.json``); ``add_server`` adds a dynamic
   server in "maint"; ``switch`` is the flip (all ``ready`` then all ``drain``, one line);
   ``remove_server`` puts a server in maint and deletes it once its last request has finished.
4. ``servers()``/``routes()`` read everything back from the live process (nothing is cached), so
   a restarted daemon reconciles against what HAProxy really does.
5. ``stop()``: soft stop (SIGUSR1: listeners close, requests finish), bounded, then SIGTERM.

Choices (checked against HAProxy 2.6.12 here): instances are 2.6 *dynamic servers* (``add server``
needs no experimental mode and works with ``balance roundrobin``), not pre-declared slots whose
address is changed, so a service can have any number of instances and HAProxy itself refuses to
``del server`` while a request is still on it. A dynamic server starts in maint. The process runs
plain ``-D`` (no master-worker): nothing ever reloads it, so a master would only add a process.

Files under ``proxy_dir``: haproxy.cfg, haproxy.pid, admin.sock, hosts.map, services.map,
backends.json. HAProxy's own limits: server names are ``[A-Za-z0-9_.-]`` (slipstream ids such as
"d12-1" are used as they are), upstreams are always 127.0.0.1, and hosts match exactly (no
wildcards).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slipstream.errors import CommandFailed, Conflict, InvalidInput, NotFound, Unavailable
from slipstream.proxy import process
from slipstream.proxy.admin import AdminClient
from slipstream.proxy.config import (DEFAULT_POOL_SIZE, backend_names, plan_backends, render_bind,
                                     render_config, render_hosts_map, render_services_map)
from slipstream.proxy.model import (Route, ServerState, check_admin, check_port,
                                    check_server_name, check_service)
from slipstream.proxy.parse import parse_map, parse_servers_state, parse_stat_sessions

# Characters HAProxy's config (map paths, socket path) and CLI take without quoting.
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./@+-]+$")
# HAProxy binds "<socket>.<pid>.tmp" first; sun_path holds 108 bytes.
_MAX_SOCKET_PATH = 95


@dataclass(frozen=True)
class _Live:
    """One read of the live process: maps and servers of the backend pool."""

    services: dict[str, str]                 # service -> backend
    hosts: dict[str, str]                    # host -> backend
    servers: dict[str, list[ServerState]]    # backend -> its servers

    def service_of(self, backend: str) -> str | None:
        return next((s for s, b in self.services.items() if b == backend), None)

    def hosts_of(self, backend: str) -> list[str]:
        return sorted(h for h, b in self.hosts.items() if b == backend)


class Proxy:
    """Slipstream's HAProxy: start/adopt/stop it and change routes and servers at runtime."""

    def __init__(self, proxy_dir: Path, http_port: int, bind_host: str = "127.0.0.1", *,
                 pool_size: int = DEFAULT_POOL_SIZE, haproxy: str = "haproxy",
                 timeout: float = 5.0) -> None:
        self.proxy_dir = Path(proxy_dir).absolute()
        if not _SAFE_PATH.match(str(self.proxy_dir)):
            raise InvalidInput(f"proxy directory {self.proxy_dir} contains characters HAProxy's "
                               "config cannot hold (spaces, quotes, ';', ',', '#')",
                               "choose a SLIPSTREAM_HOME made of letters, digits and '/._-'")
        self.http_port = check_port(http_port, "http port")
        render_bind(bind_host, http_port)  # validates the address
        self.bind_host = bind_host
        self.pool_size = pool_size
        self.pool = backend_names(pool_size)
        self.haproxy = haproxy
        self.config_path = self.proxy_dir / "haproxy.cfg"
        self.pidfile = self.proxy_dir / "haproxy.pid"
        self.socket_path = self.proxy_dir / "admin.sock"
        self.hosts_map = self.proxy_dir / "hosts.map"
        self.services_map = self.proxy_dir / "services.map"
        self.assignment_file = self.proxy_dir / "backends.json"
        if len(str(self.socket_path).encode()) > _MAX_SOCKET_PATH:
            raise InvalidInput(f"admin socket path {self.socket_path} is longer than "
                               f"{_MAX_SOCKET_PATH} bytes, too long for a unix socket",
                               "choose a shorter SLIPSTREAM_HOME")
        self._admin = AdminClient(self.socket_path, timeout)
        self._timeout = timeout
        self._lock = threading.RLock()

    # Process ---------------------------------------------------------------------------------
    def start(self, routes: Sequence[Route] = ()) -> None:
        """Start HAProxy (or adopt the one already running) and make it include ``routes``."""
        routes = tuple(routes)
        _check_routes(routes)
        with self._lock:
            self.proxy_dir.mkdir(parents=True, exist_ok=True)
            fresh = process.find_running(self.pidfile, self.config_path) is None
            if fresh:
                self._launch(routes)
            else:
                self._check_adoptable()
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
            live = self._read()
            commands: list[str] = []
            backend = live.services.get(service)
            if backend is None:
                backend = self._allocate(live, service)
                commands.append(f"add map {self.services_map} {backend} {service}")
            for host in wanted:
                owner_backend = live.hosts.get(host)
                if owner_backend == backend:
                    continue
                owner = live.service_of(owner_backend) if owner_backend else None
                if owner is not None:
                    raise Conflict(f"host {host} is already routed to service {owner}",
                                   f"remove it from {owner} first")
                if owner_backend is not None:  # a leftover entry of no service
                    commands.append(f"del map {self.hosts_map} {host}")
                commands.append(f"add map {self.hosts_map} {host} {backend}")
            commands += [f"del map {self.hosts_map} {host}"
                         for host in live.hosts_of(backend) if host not in wanted]
            if commands:
                self._admin.send(commands)
            self._save_assignment({**live.services, service: backend})

    def remove_route(self, service: str) -> None:
        """Stop routing ``service``: drop its hosts, delete its servers, free its backend."""
        check_service(service)
        with self._lock:
            live = self._read()
            backend = live.services.get(service)
            if backend is None:
                return
            hosts = live.hosts_of(backend)
            if hosts:
                self._admin.send([f"del map {self.hosts_map} {host}" for host in hosts])
            for server in live.servers.get(backend, []):
                self._delete_server(service, backend, server.name)
            self._admin.send([f"del map {self.services_map} {backend}"])
            self._save_assignment({s: b for s, b in live.services.items() if s != service})

    # Servers ---------------------------------------------------------------------------------
    def add_server(self, service: str, name: str, port: int) -> None:
        """Add an instance to ``service`` in "maint" (no traffic until it is set ready)."""
        check_service(service)
        check_server_name(name)
        check_port(port, f"port of server {name}")
        with self._lock:
            live = self._read()
            commands: list[str] = []
            backend = live.services.get(service)
            if backend is None:
                backend = self._allocate(live, service)
                commands.append(f"add map {self.services_map} {backend} {service}")
            existing = _find(live.servers.get(backend, []), name)
            if existing is not None:
                if existing.port == port:
                    return
                raise Conflict(f"server {name} of {service} already exists on port "
                               f"{existing.port}, not {port}", "remove it first")
            commands.append(f"add server {backend}/{name} 127.0.0.1:{port} disabled")
            self._admin.send(commands)
            if len(commands) == 2:
                self._save_assignment({**live.services, service: backend})

    def set_state(self, service: str, name: str, admin: str) -> None:
        """Set one server of ``service`` to "ready", "drain" or "maint"."""
        check_admin(admin)
        with self._lock:
            backend = self._require(self._read(hosts=False, sessions=False), service, [name])
            self._admin.send([f"set server {backend}/{name} state {admin}"])

    def switch(self, service: str, ready: Sequence[str], drain: Sequence[str]) -> None:
        """The flip: one admin round trip sets all ``ready`` servers ready, then ``drain`` drain."""
        ready, drain = list(ready), list(drain)
        both = set(ready) & set(drain)
        if both:
            raise InvalidInput(f"servers {', '.join(sorted(both))} cannot be both ready and drain")
        with self._lock:
            live = self._read(hosts=False, sessions=False)
            backend = self._require(live, service, ready + drain)
            commands = [f"set server {backend}/{n} state ready" for n in ready]
            commands += [f"set server {backend}/{n} state drain" for n in drain]
            if commands:
                self._admin.send(commands)

    def remove_server(self, service: str, name: str, timeout: float = 10.0) -> None:
        """Put a server in maint; delete it once its last request ends (``timeout`` s at most)."""
        check_service(service)
        check_server_name(name)
        with self._lock:
            live = self._read(hosts=False, sessions=False)
            backend = live.services.get(service)
            if backend is None or _find(live.servers.get(backend, []), name) is None:
                return
            self._delete_server(service, backend, name, timeout)

    def servers(self, service: str) -> list[ServerState]:
        """The servers of ``service`` as the live HAProxy has them (state and sessions)."""
        with self._lock:
            live = self._read(hosts=False)
            backend = self._require(live, service, [])
            return list(live.servers.get(backend, []))

    def routes(self) -> list[Route]:
        """Every route with its hosts and servers, read back from the live HAProxy."""
        with self._lock:
            live = self._read()
        return [Route(service, tuple(live.hosts_of(backend)),
                      tuple(live.servers.get(backend, [])))
                for service, backend in sorted(live.services.items())]

    # Internals -------------------------------------------------------------------------------
    def _read(self, *, hosts: bool = True, sessions: bool = True) -> _Live:
        """Read the maps, server states and (optionally) sessions in one round trip."""
        commands = [f"show map {self.services_map}", "show servers state"]
        if hosts:
            commands.append(f"show map {self.hosts_map}")
        if sessions:
            commands.append("show stat -1 4 -1")
        answers = dict(zip(commands, self._admin.send(commands, check=False)))
        pool = set(self.pool)
        services = {svc: be for be, svc in parse_map(answers[commands[0]]).items() if be in pool}
        hosts_text = answers.get(f"show map {self.hosts_map}", "")
        host_map = {h: be for h, be in parse_map(hosts_text).items() if be in pool}
        scur = parse_stat_sessions(answers["show stat -1 4 -1"]) if sessions else {}
        servers: dict[str, list[ServerState]] = {}
        for row in parse_servers_state(answers["show servers state"]):
            if row.backend in pool:
                servers.setdefault(row.backend, []).append(ServerState(
                    row.name, row.port, row.admin, scur.get((row.backend, row.name), 0)))
        for rows in servers.values():
            rows.sort(key=lambda s: s.name)
        return _Live(services, host_map, servers)

    def _allocate(self, live: _Live, service: str) -> str:
        """Pick a free backend for ``service`` (its previous one if free); Conflict when full."""
        taken = set(live.services.values()) | {b for b, s in live.servers.items() if s}
        taken |= set(live.hosts.values())
        plan = plan_backends([service], self._load_assignment(), self.pool_size, taken)
        return plan[service]

    def _require(self, live: _Live, service: str, names: Sequence[str]) -> str:
        """The backend of ``service``; NotFound if it has none or lacks one of ``names``."""
        check_service(service)
        for name in names:
            check_server_name(name)
        backend = live.services.get(service)
        if backend is None:
            raise NotFound(f"service {service} has no route in the proxy",
                           "set its route or add a server first")
        have = {s.name for s in live.servers.get(backend, [])}
        missing = [n for n in names if n not in have]
        if missing:
            raise NotFound(f"service {service} has no server {', '.join(missing)} in the proxy",
                           f"known servers: {', '.join(sorted(have)) or 'none'}")
        return backend

    def _delete_server(self, service: str, backend: str, name: str, timeout: float = 10.0) -> None:
        """Maint + del server; retry the delete until in-flight requests are gone or timeout."""
        target = f"{backend}/{name}"
        answers = self._admin.send([f"set server {target} state maint", f"del server {target}"],
                                   check=False)
        if answers[0].strip():
            raise CommandFailed(f"haproxy refused 'set server {target} state maint': {answers[0]}")
        answer = answers[1].strip()
        deadline = time.monotonic() + timeout
        while answer != "Server deleted.":
            if not answer.startswith("Server still has connections"):
                raise CommandFailed(f"haproxy refused 'del server {target}': {answer}")
            if time.monotonic() >= deadline:
                raise Conflict(f"server {name} of {service} still has requests in flight after "
                               f"{timeout:g} s",
                               "it stays in maint; call remove_server again later")
            time.sleep(0.05)
            answer = self._admin.send([f"del server {target}"], check=False)[0].strip()

    def _launch(self, routes: tuple[Route, ...]) -> None:
        """Render the files with ``routes`` and start a new HAProxy; wait for its socket."""
        process.check_port_free(self.bind_host, self.http_port)
        self.pidfile.unlink(missing_ok=True)
        self.socket_path.unlink(missing_ok=True)
        assignment = plan_backends([r.service for r in routes], self._load_assignment(),
                                   self.pool_size)
        _write(self.hosts_map, render_hosts_map(routes, assignment))
        _write(self.services_map, render_services_map(assignment))
        _write(self.config_path, render_config(
            proxy_dir=self.proxy_dir, http_port=self.http_port, bind_host=self.bind_host,
            routes=routes, assignment=assignment, pool_size=self.pool_size))
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
        self._save_assignment(assignment)

    def _check_adoptable(self) -> None:
        """Refuse to adopt an HAProxy whose port or backend pool differs from ours."""
        try:
            text = self.config_path.read_text()
        except OSError:
            text = ""
        bind = f"    bind {render_bind(self.bind_host, self.http_port)}\n"
        pool = {line.split()[1] for line in text.splitlines() if line.startswith("backend be_")}
        if bind not in text or pool != set(self.pool):
            pid = self.pid()
            raise Conflict(f"the running haproxy (pid {pid}) was started with another port, "
                           "address or backend pool than this proxy",
                           "run 'slipstream down' first, then start again")

    def _include(self, routes: tuple[Route, ...], fresh: bool) -> None:
        """Make the live state include ``routes`` (see step 2 of the lifecycle above)."""
        for route in routes:
            live = self._read()
            backend = live.services.get(route.service)
            if backend is None or live.hosts_of(backend) != sorted(route.hosts):
                self.set_route(route.service, route.hosts)
                live = self._read()
                backend = live.services[route.service]
            have = {s.name: s for s in live.servers.get(backend, [])}
            for server in route.servers:
                current = have.get(server.name)
                if current is None:
                    self.add_server(route.service, server.name, server.port)
                    if server.admin != "maint":
                        self.set_state(route.service, server.name, server.admin)
                elif fresh and current.admin != server.admin:
                    self.set_state(route.service, server.name, server.admin)
        if routes and not fresh:
            self._save_assignment(self._read().services)

    def _load_assignment(self) -> dict[str, str]:
        """The service -> backend record of ``backends.json`` (empty if missing or unreadable)."""
        try:
            data = json.loads(self.assignment_file.read_text())
            services = data.get("services", {})
            return {str(k): str(v) for k, v in services.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def _save_assignment(self, assignment: dict[str, str]) -> None:
        """Mirror the service -> backend assignment to ``backends.json``."""
        body = json.dumps({"services": dict(sorted(assignment.items()))}, indent=2)
        _write(self.assignment_file, body + "\n")


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


def _find(servers: Sequence[ServerState], name: str) -> ServerState | None:
    return next((s for s in servers if s.name == name), None)


def _write(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

