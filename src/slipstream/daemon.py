"""The daemon: wires the parts together and serves the API on a unix socket (and, with
``SLIPSTREAM_API_LISTEN``, over TLS on TCP to holders of a token: see ``api/auth.py``).

Lifecycle: open the state and the master key, start (or adopt) HAProxy and the instances through
``Engine.start``, serve the API until asked to stop. A SIGTERM/SIGINT or ``POST /v1/shutdown
{"everything": false}`` stops only the daemon (apps and HAProxy keep serving; a restarted daemon
adopts them); ``slipstream down`` asks for everything to stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import hashlib
import logging
import os
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from slipstream import failpoints
from slipstream.api.app import create_app
from slipstream.api.auth import TokenAuth
from slipstream.api.listener import Listener, bind_tcp, fingerprint, prepare_listener
from slipstream.builds import Builder
from slipstream.builds.docker import DockerBuilder
from slipstream.builds.toolchain import find_uv
from slipstream.engine.dbs import DatabaseManager
from slipstream.engine.engine import Engine
from slipstream.engine.keyvalues import KeyValueManager
from slipstream.errors import Conflict
from slipstream.logs import (
    AccessReceiver,
    Drains,
    DrainSpec,
    Level,
    LogLine,
    LogMasker,
    LogPipeline,
    LogStore,
    Retention,
    Stream,
)
from slipstream.logs.receiver import deepen_datagram_queue
from slipstream.osusers import PROXY_USER, ServiceUsers, ensure_system_user, plan_traversal, reachable_python
from slipstream.proxy import Proxy
from slipstream.proxy.process import ProxyUser
from slipstream.runtime import LocalDriver
from slipstream.runtime.cgroups import LimitCgroups, MemoryCgroups
from slipstream.runtime.podman import PodmanDriver
from slipstream.runtime.podman_cli import PodmanCli
from slipstream.runtime.routing import RoutingDriver
from slipstream.secrets import Masker, SecretBox
from slipstream.settings import Settings
from slipstream.state import Store

log = logging.getLogger("slipstream.daemon")


def _bind_socket(path: os.PathLike[str] | str) -> socket.socket:
    """Bind the API's unix socket with mode 0600 from the start (no window where others can connect)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(path))
    except OSError:
        pass
    else:
        raise Conflict("slipstream is already running", "run 'slipstream status'")
    finally:
        probe.close()
    if os.path.exists(path):
        os.unlink(path)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    sock.listen(128)
    return sock


def build_engine(settings: Settings) -> Engine:
    """Construct the engine and its parts from settings (nothing is started yet)."""
    settings.ensure_dirs()
    box = SecretBox(settings.master_key)
    store = Store(settings.state_db, box)
    masker = Masker()
    logs = log_pipeline(settings, store, masker)
    access_log = settings.access_socket if settings.access_log == "on" else None
    proxy_user = None
    if settings.service_users_on:
        entry = ensure_system_user(PROXY_USER, "slipstream proxy")
        proxy_user = ProxyUser(entry.pw_name, entry.pw_uid, entry.pw_gid)
    proxy = Proxy(
        settings.proxy_dir,
        settings.http_port,
        settings.bind_host,
        pool_size=settings.proxy_services,
        slots=settings.proxy_slots,
        private_pool=settings.proxy_private_services,
        access_log=access_log,
        run_as=proxy_user,
    )
    users = None
    if settings.service_users_on:
        users = ServiceUsers(settings.builds_dir, settings.cache_dir, settings.disks_dir)
    engine_ref: list[Engine] = []
    cgroups = None
    label = "slipstream-" + hashlib.sha256(str(settings.home).encode()).hexdigest()[:10]
    if settings.memory_cgroups != "off":
        cgroups = MemoryCgroups.detect(label)
    limits = LimitCgroups.detect(label)  # CPU shares, process limits, and the stop sweep

    def on_event(iid: str, kind: str, message: str) -> None:
        if engine_ref:
            engine_ref[0].on_instance_event(iid, kind, message)

    podman_driver, images = None, None
    podman = PodmanCli(settings.podman_dir)
    if podman.available():
        podman_driver = PodmanDriver(podman, on_event=on_event)
        images = DockerBuilder(podman)
    local = LocalDriver(on_event=on_event, memory_cgroups=cgroups, limit_cgroups=limits, pids_max=settings.pids_max)
    driver = RoutingDriver(local, podman_driver)
    builder = Builder(
        settings.builds_dir,
        settings.cache_dir,
        python=reachable_python() if users else sys.executable,
        uv=python_installer(settings, users is not None),
        cgroups=local.oneoff_cgroups,  # a build command gets the process limit and the sweep
        slots=settings.build_slots,
    )
    dbs = DatabaseManager(
        settings, store, masker, backup_interval_s=settings.backup_interval_s, retention=settings.backup_retention
    )
    engine = Engine(
        settings,
        store,
        proxy,
        driver,
        builder,
        masker,
        databases=dbs,
        keyvalues=KeyValueManager(settings, store, masker),
        images=images,
        logs=logs,
        observe=True,
        service_users=users,
        on_idle=trim_malloc,
    )
    engine_ref.append(engine)
    return engine


# Events whose lines are already read from their files (the transcript echoes them): not twice.
_ECHOED_KINDS = {"app", "build", "pre_deploy"}


_TROUBLE = ("exited", "killed", "exceeded", "failed", "taken out of rotation", "could not")


def python_installer(settings: Settings, service_users: bool = False) -> str | None:
    """The uv binary Python builds install with, or None for pip (chosen, no uv found, or one that
    service users could not run: a checkout under root's 0700 home)."""
    if settings.python_installer != "uv":
        return None
    uv = find_uv(sys.executable)
    if uv is None:
        log.warning("SLIPSTREAM_PYTHON_INSTALLER is uv but no uv binary was found; Python builds use pip")
    elif service_users and (plan_traversal(Path(uv), Path("/"), -1) or not os.stat(uv).st_mode & stat.S_IXOTH):
        log.warning("service users cannot run %s; Python builds use pip", uv)
        return None
    return uv


def event_level(kind: str, message: str) -> Level:
    """How bad a platform event is: a failed deploy is an error; a crash, a kill, a failing check
    or a failed backup is a warning; the rest is information."""
    if kind == "error":
        return Level.ERROR
    lowered = message.lower()
    return Level.WARN if any(word in lowered for word in _TROUBLE) else Level.INFO


def log_pipeline(settings: Settings, store: Store, masker: Masker) -> LogPipeline:
    """The searchable log store and the one thread feeding it: instance, build, pre-deploy and cron
    files, the daemon's own events and log records; secrets (and their encoded forms) masked first."""
    log_masker = LogMasker(masker)
    max_age_s = settings.log_retention_days * 86400
    retention = Retention(max_age_s=max_age_s, max_bytes=settings.log_max_mb * 1024 * 1024)
    every = min(60.0, max(1.0, max_age_s / 10))  # prune often enough that the age limit holds
    pipeline = LogPipeline(LogStore(settings.logs_db, log_masker, retention), Drains(), prune_every_s=every)
    pipeline.drains.set(DrainSpec(f"drain-{i + 1}", url) for i, url in enumerate(settings.log_drains))

    def on_event(ts: float, kind: str, message: str, service: str | None, deploy_id: int | None) -> None:
        if kind not in _ECHOED_KINDS:
            level = event_level(kind, message)
            pipeline.emit([LogLine(ts, service or "", Stream.EVENT, message, deploy_id=deploy_id, level=level)])

    store.listen(on_event)
    return pipeline


def instance_by_port(store: Store, refresh_s: float = 1.0) -> Callable[[str, str | None, int | None], str | None]:
    """Which instance served an access line, by its loopback port (each instance has its own),
    from a table read again at most every ``refresh_s``."""
    table: dict[int, str] = {}
    read_at = [0.0]

    def resolve(backend: str, server: str | None, port: int | None) -> str | None:
        if port is None:
            return None
        if port not in table and time.monotonic() - read_at[0] > refresh_s:
            read_at[0] = time.monotonic()
            table.clear()
            table.update({i.port: i.id for i in store.instances() if i.port})
        return table.get(port)

    return resolve


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (``M_ARENA_MAX``) before any thread starts: each deploy, probe and
    API thread would otherwise get an arena of its own that keeps its memory after the thread is
    gone, and the idle daemon's RSS grows with the work it has done. False where it does not apply."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-8, arenas))  # -8 is M_ARENA_MAX in glibc's malloc.h
    except (OSError, AttributeError):
        return False


def trim_malloc() -> None:
    """Give the heap's free pages back to the kernel (glibc ``malloc_trim``) after a burst of
    deploys: glibc keeps what 200 parallel deploys freed, and a trim took that idle daemon from
    142 to 101 MB RSS (measured here). Nothing happens where glibc is not the allocator."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _remove_cgroups(engine: Engine) -> None:
    """Kill what is left in the instances' cgroups and remove them: after 'slipstream down' or a failed start."""
    driver = engine.ctx.driver
    local = getattr(driver, "local", driver)
    limits = getattr(local, "limit_cgroups", None)
    if limits is not None:
        limits.cleanup()  # first: it sweeps every instance cgroup, so the memory ones are empty after it
    cgroups = getattr(local, "memory_cgroups", None)
    if cgroups is not None:
        cgroups.cleanup()


TICK_S = 0.5  # how soon a stop request (a signal, POST /v1/shutdown) is noticed


class _Server(uvicorn.Server):
    """uvicorn's server, waking twice a second instead of ten times: its loop only looks for a stop
    request and refreshes the ``Date`` header (whole seconds); ten wake-ups a second cost the idle
    daemon ~0.17 % of a core, two ~0.07 % (measured here)."""

    async def main_loop(self) -> None:
        while not await self.on_tick(0):  # tick 0: the Date header is refreshed on every tick
            await asyncio.sleep(TICK_S)


class _TcpServer(_Server):
    """The TCP listener's server: the unix socket's server owns SIGTERM/SIGINT, this one follows it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _serve(servers: list[tuple[uvicorn.Server, socket.socket]]) -> None:
    """Serve every (server, socket) pair until one stops; then stop the others too."""

    async def main() -> None:
        tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for server, _ in servers:
            server.should_exit = True
        await asyncio.gather(*tasks)

    with asyncio.Runner(loop_factory=servers[0][0].config.get_loop_factory()) as runner:  # as Server.run does
        runner.run(main())


def _tcp_server(engine: Engine, app: FastAPI, listener: Listener) -> uvicorn.Server:
    config = uvicorn.Config(
        TokenAuth(app, engine.store),
        log_level="warning",
        access_log=False,  # a request line never reaches a log (no token ever could)
        lifespan="off",
        ssl_certfile=str(listener.cert_file),
        ssl_keyfile=str(listener.key_file),
    )
    return _TcpServer(config)


def run_daemon(settings: Settings) -> None:
    """Run in the foreground until stopped."""
    limit_malloc_arenas()
    failpoints.arm(settings.failpoints)
    settings.ensure_dirs()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    listener = prepare_listener(settings)
    sock = _bind_socket(settings.api_socket)
    try:
        tcp = bind_tcp(listener.host, listener.port) if listener else None
    except BaseException:
        sock.close()
        os.unlink(settings.api_socket)
        raise
    engine = build_engine(settings)
    receiver = None
    if engine.log_pipeline is not None:  # HAProxy's access lines, and the daemon's own log records
        logging.getLogger().addHandler(engine.log_pipeline.handler(logging.INFO))
        pipeline, observed = engine.log_pipeline, engine.observability

        def access(lines: list[LogLine]) -> None:
            pipeline.emit(lines, wake=False)
            if observed is not None:
                observed.observe_access(lines)

        if settings.access_log == "on":
            bound = deepen_datagram_queue()  # before the socket exists: it keeps the bound it was made with
            receiver = AccessReceiver(settings.access_socket, access, instance_by_port(engine.store), bound)
            receiver.start()
    everything = threading.Event()
    servers: list[tuple[uvicorn.Server, socket.socket]] = []

    def request_shutdown(all_: bool) -> None:
        if all_:
            everything.set()
        for server, _ in servers:
            server.should_exit = True

    try:
        engine.start()
    except BaseException:
        if tcp is not None:
            tcp.close()
        sock.close()
        os.unlink(settings.api_socket)
        if receiver is not None:
            receiver.stop()
        engine.close()
        _remove_cgroups(engine)
        raise
    fd = os.open(settings.daemon_pidfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # run/ is traversable (HAProxy's user sends to access.sock): nothing else there is
    with os.fdopen(fd, "w") as pidfile:
        pidfile.write(str(os.getpid()))
    app = create_app(engine, request_shutdown, listener)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    servers.append((_Server(config), sock))
    if listener is not None and tcp is not None:
        servers.append((_tcp_server(engine, app, listener), tcp))
    log.info(
        "slipstream daemon %s serving on %s; HTTP on %s:%s",
        os.getpid(),
        settings.api_socket,
        settings.bind_host,
        settings.http_port,
    )
    if listener is not None:
        if listener.ca_file is not None:
            trust = f"CA {listener.ca_file} (SHA-256 {fingerprint(listener.ca_file.read_bytes())})"
        else:
            trust = f"certificate {listener.cert_file}"
        log.info("API on %s for token holders; TLS %s", listener.url, trust)
    try:
        _serve(servers)
    finally:
        if everything.is_set():
            log.info("stopping every instance, HAProxy and PostgreSQL")
            engine.shutdown()
            _remove_cgroups(engine)
        else:
            engine.close()
        if receiver is not None:
            receiver.stop()
        for p in (settings.api_socket, settings.daemon_pidfile):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
