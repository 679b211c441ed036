"""One Redis server for one blueprint ``keyvalue`` entry, under ``<root>/<name>``, owned by slipstream.

Lifecycle of :meth:`KeyValueServer.start` (every step is safe to repeat):
  1. pick the OS user: as root the server runs as Debian's ``redis`` user through ``setpriv``;
  2. lay out the directory (0711, ours) and make its ancestors traversable for that user, but only
     up to ``traverse_root``; anything above must already be traversable;
  3. load ``server.json`` (0600) or create it with a free loopback port and an admin password, and
     record the wanted spec and the hash of the app's password in it;
  4. if the recorded pid and start time (or, after a crash between launch and record, the pid file
     of a process titled with our ``redis.conf``) name a live server, ADOPT it: a changed spec is
     applied with ``CONFIG SET``/``ACL SETUSER``, never by a restart (a port change excepted);
  5. (re)write ``redis.conf`` from ``server.json``;
  6. run ``redis-server redis.conf``: it daemonizes into its own session, so it outlives the daemon;
     it is up when slipstream's own login answers PING and INFO names our ``redis.conf``. A failure
     is read from its log; a port taken before the server ever ran is swapped for another free one.
:meth:`KeyValueServer.stop` sends SIGTERM (Redis flushes the AOF and exits), SIGKILL after a timeout.

Layout of the directory::

    server.json   port, spec, app password hash, admin password, pid + start time (0600, slipstream's)
    redis.conf    written on every start and change; passwords only as SHA-256 (0600, the OS user's)
    data/         the append-only files (appendonlydir/) and the pid file (0700, the OS user's)
    redis.log     the server's own log (0600, the OS user's)
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import psutil

from slipstream import runner
from slipstream.errors import Conflict, InvalidInput, SlipstreamError, Unavailable
from slipstream.keyvalue.client import Connection, ReplyError, connect
from slipstream.keyvalue.commands import (
    build_server_argv,
    find_redis_server,
    hash_password,
    parse_config_error,
    parse_info,
    parse_log,
    parse_log_failure,
    plan_config_changes,
    render_redis_conf,
    summarize_info,
)
from slipstream.keyvalue.models import (
    ADMIN_USER,
    APP_USER,
    HOST,
    ServerSpec,
    ServerStatus,
    check_maxmemory,
    check_name,
    check_policy,
)
from slipstream.osusers import plan_traversal
from slipstream.runtime.process import create_time_of, is_same_process

OS_USER = "redis"  # Debian's redis-server package creates it
START_ATTEMPTS = 3  # a freshly chosen port can be taken between choosing and binding
READY_TIMEOUT_S = 30.0  # from launch until the port answers
LOADING_TIMEOUT_S = 600.0  # a big AOF takes a while to replay; the server says LOADING meanwhile
STOP_TIMEOUT_S = 30.0
# Measured on this kernel (6.18): a killed server's port refuses a new bind for 10-20 ms while no
# socket listens on it any more. A bind failure with no listener is retried on the same port this long.
PORT_SETTLE_S = 2.0

StartResult = Literal["started", "adopted", "reconfigured"]


@dataclass(frozen=True)
class OsUser:
    """The account the server runs as (``name`` None: as ourselves)."""

    name: str | None
    uid: int
    gid: int


def resolve_os_user() -> OsUser:
    """Ourselves when not root; as root, Debian's ``redis`` user (a server never runs as root)."""
    if os.geteuid() != 0:
        return OsUser(None, os.geteuid(), os.getegid())
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        raise Unavailable(
            f"user {OS_USER!r} does not exist, and slipstream will not run Redis as root",
            "apt-get install redis-server (the package creates the user)",
        ) from None
    return OsUser(OS_USER, entry.pw_uid, entry.pw_gid)


def free_port(host: str = HOST) -> int:
    """A loopback port nobody listens on right now (bind port 0 and ask)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def listeners(port: int) -> list[int | None]:
    """The pids of the sockets listening on TCP ``port`` (None where the owner is hidden from us)."""
    try:
        return [
            c.pid
            for c in psutil.net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port
        ]
    except psutil.Error:
        return [None]


def describe_listener(port: int) -> str:
    """Who listens on TCP ``port``: ``pid 123 (python3)``, or ``another process`` when we cannot tell."""
    for pid in listeners(port):
        try:
            return f"pid {pid} ({psutil.Process(pid).name()})" if pid else "another process"
        except psutil.Error:
            pass
    return "another process"


class StartFailed(Unavailable):
    """Raised when ``redis-server`` did not come up; ``port_taken`` tells a busy port from the rest."""

    def __init__(self, message: str, hint: str | None = None, *, port_taken: bool = False) -> None:
        super().__init__(message, hint)
        self.port_taken = port_taken


class KeyValueServer:
    """Start, adopt, change and stop the server of one ``keyvalue`` entry; see the module docstring."""

    def __init__(self, root: Path, name: str, *, traverse_root: Path | None = None) -> None:
        self.name = check_name(name)
        self.root = Path(root).absolute()
        self.dir = self.root / name
        self.state_file = self.dir / "server.json"
        self.conf = self.dir / "redis.conf"
        self.data_dir = self.dir / "data"
        self.pidfile = self.data_dir / "redis.pid"
        self.log = self.dir / "redis.log"
        self._traverse_root = (Path(traverse_root) if traverse_root else self.root.parent).resolve()
        self._os_user: OsUser | None = None

    # Facts -----------------------------------------------------------------------------------
    @property
    def os_user(self) -> OsUser:
        """The account the server runs as (resolved on first use)."""
        if self._os_user is None:
            self._os_user = resolve_os_user()
        return self._os_user

    def exists(self) -> bool:
        """Whether this server was ever set up (its ``server.json`` exists)."""
        return self.state_file.exists()

    @property
    def port(self) -> int:
        """The port the server listens on (chosen once, kept in ``server.json``)."""
        return int(self._load_state()["port"])

    def spec(self) -> ServerSpec:
        """The settings last asked for (what the server runs with, or will on its next start)."""
        state = self._load_state()
        return ServerSpec(str(state["policy"]), state["maxmemory_mb"], tuple(state["bind"]))

    def wanted(self) -> bool:
        """Whether the server should be running (False after :meth:`stop` with ``wanted=False``)."""
        return self.exists() and bool(self._load_state().get("wanted", True))

    def pid(self) -> int | None:
        """The live server's pid, or None; a server found only through its pid file is adopted here."""
        state = self._read_state()
        if state is None:
            return None
        pid, started = state.get("pid"), state.get("create_time")
        if isinstance(pid, int) and isinstance(started, float) and is_same_process(pid, started):
            return pid
        found = self._pid_from_pidfile()
        if found is not None:
            self._save_state({**state, "pid": found, "create_time": float(psutil.Process(found).create_time())})
        return found

    def running(self) -> bool:
        """Whether our server process is alive (pid and start time match; a zombie counts as dead)."""
        return self.pid() is not None

    # Lifecycle -------------------------------------------------------------------------------
    def start(
        self, password: str | None = None, *, spec: ServerSpec | None = None, port: int | None = None
    ) -> StartResult:
        """Adopt the running server (applying a changed spec live) or start it; see the module docstring.

        ``password`` and ``spec`` None keep what ``server.json`` holds (a restart after a crash);
        a first start needs the password.
        """
        if spec is not None:
            check_policy(spec.policy)
            check_maxmemory(spec.maxmemory_mb)
        old = self._read_state()
        running = old is not None and self.running()
        if running:
            old = self._read_state()  # running() may have just recorded a server found by its pid file
        if old is None:
            old = self._initial_state(password, port)
        new = dict(old, wanted=True)
        if password is not None:
            new["app_password_sha256"] = hash_password(password)
        if spec is not None:
            new.update(policy=spec.policy, maxmemory_mb=spec.maxmemory_mb, bind=list(spec.bind))
        moved = port is not None and port != old["port"]
        if moved:
            new.update(port=port, port_confirmed=False)
        self._prepare_dir()
        if running:
            if moved:
                self.stop(wanted=True)
                new.update(pid=None, create_time=None)
            else:
                if new != old:
                    self._save_state(new)
                    self._write_conf(new)
                return "reconfigured" if self._apply_live(old, new) else "adopted"
        self._save_state(new)
        self._launch(explicit_port=port is not None)
        return "started"

    def stop(self, *, wanted: bool = False, timeout: float = STOP_TIMEOUT_S) -> bool:
        """SIGTERM (Redis flushes its AOF), SIGKILL after ``timeout``; True if a server was running.

        ``wanted=False`` (the default) keeps it stopped for the manager's checks and restarts."""
        if not self.exists():
            return False
        pid = self.pid()
        if pid is not None:
            self._signal(pid, signal.SIGTERM)
            if not self._wait_gone(pid, timeout):
                self._signal(pid, signal.SIGKILL)
                self._wait_gone(pid, 10.0)
        self.pidfile.unlink(missing_ok=True)
        self._save_state({**self._load_state(), "pid": None, "create_time": None, "wanted": wanted})
        return pid is not None

    # Talking to it -----------------------------------------------------------------------------
    def admin(self, timeout: float = 5.0) -> Connection:
        """A connection logged in as slipstream's own user (close it, or use it as a context manager)."""
        return connect(HOST, self.port, ADMIN_USER, str(self._load_state()["admin_password"]), timeout=timeout)

    def ping(self) -> bool:
        """True when the server answers PING to slipstream's login within 2 s."""
        try:
            with self.admin(timeout=2.0) as conn:
                return conn.text("PING") == "PONG"
        except SlipstreamError:
            return False

    def info(self) -> ServerStatus:
        """Version, memory, eviction policy, AOF state and clients, from ``INFO``."""
        with self.admin() as conn:
            return summarize_info(parse_info(conn.text("INFO")))

    # Steps -----------------------------------------------------------------------------------
    def _launch(self, *, explicit_port: bool) -> None:
        argv = build_server_argv(find_redis_server(), self.conf, self.os_user.name)
        settle_until = time.monotonic() + PORT_SETTLE_S
        attempt = 0
        while True:
            state = self._load_state()
            self._write_conf(state)
            offset = self.log.stat().st_size if self.log.exists() else 0
            try:
                result = runner.run(argv, cwd=self.dir, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"}, check=False)
                if result.returncode != 0:
                    detail = parse_config_error(result.stderr or result.stdout)
                    raise StartFailed(
                        f"keyvalue {self.name}: redis-server refused its config: {detail}", f"see {self.conf}"
                    )
                pid = self._wait_ready(offset, int(state["port"]), str(state["admin_password"]))
            except StartFailed as exc:
                port = int(state["port"])
                if exc.port_taken and not listeners(port) and time.monotonic() < settle_until:
                    time.sleep(0.05)  # nobody listens: the kernel is still tearing a dead server's socket down
                    continue
                retry = exc.port_taken and not explicit_port and not state.get("port_confirmed")
                attempt += 1
                if retry and attempt < START_ATTEMPTS:
                    self._save_state({**state, "port": free_port()})
                    continue
                if exc.port_taken:
                    raise Conflict(
                        f"keyvalue {self.name}: port {port} on {HOST} is in use by {describe_listener(port)}",
                        "stop that process; apps already have this port in their URL"
                        if state.get("port_confirmed")
                        else "choose another port, or stop that process",
                    ) from None
                raise
            started = float(psutil.Process(pid).create_time())
            self._save_state({**state, "pid": pid, "create_time": started, "port_confirmed": True})
            return

    def _wait_ready(self, offset: int, port: int, admin_password: str) -> int:
        """Poll until our login answers PING on ``port``; return the server's pid (from INFO)."""
        begun = time.monotonic()
        pause = 0.002
        while True:
            failure = self._log_failure(offset)
            if failure is not None:
                raise failure
            loading = False
            try:
                with connect(HOST, port, ADMIN_USER, admin_password, timeout=2.0) as conn:
                    info = parse_info(conn.text("INFO", "server"))
                    if info.get("config_file") == str(self.conf):
                        conn.call("PING")
                        return int(info["process_id"])
            except ReplyError as exc:  # LOADING while the AOF replays; WRONGPASS: someone else's server
                loading = exc.code == "LOADING"
            except Unavailable:
                pass
            lines = parse_log(self._read_log(offset))
            if lines and create_time_of(lines[-1].pid) is None:  # gone, or a zombie nobody reaps
                died = self._log_failure(offset)  # read again: the reason may have been written since
                raise died or StartFailed(
                    f"keyvalue {self.name} exited while starting: {lines[-1].message}", f"see {self.log}"
                )
            waited = time.monotonic() - begun
            if waited > (LOADING_TIMEOUT_S if loading else READY_TIMEOUT_S):
                raise StartFailed(
                    f"keyvalue {self.name} did not answer on port {port} within {waited:.0f} s", f"see {self.log}"
                )
            time.sleep(pause)
            pause = min(pause * 2, 0.05)

    def _log_failure(self, offset: int) -> StartFailed | None:
        """The start failure the log shows after ``offset``, if any."""
        failure = parse_log_failure(self._read_log(offset))
        if failure is None:
            return None
        return StartFailed(
            f"keyvalue {self.name} did not start: {failure}",
            f"see {self.log}",
            port_taken="Address already in use" in failure,
        )

    def _apply_live(self, old: dict[str, Any], new: dict[str, Any]) -> bool:
        """Bring the running server to ``new`` without a restart; True when something changed."""
        spec = ServerSpec(str(new["policy"]), new["maxmemory_mb"], tuple(new["bind"]))
        with self.admin() as conn:
            reply = conn.call("CONFIG", "GET", "maxmemory", "maxmemory-policy", "bind")
            items = [x.decode() if isinstance(x, bytes) else str(x) for x in (reply if isinstance(reply, list) else [])]
            changes = plan_config_changes(dict(zip(items[::2], items[1::2], strict=True)), spec)
            if changes:
                try:
                    conn.call("CONFIG", "SET", *(part for pair in changes for part in pair))
                except ReplyError as exc:
                    raise InvalidInput(f"keyvalue {self.name}: the server refused the change: {exc.message}") from None
            rotated = new["app_password_sha256"] != old["app_password_sha256"]
            if rotated:
                conn.call("ACL", "SETUSER", APP_USER, "resetpass", f"#{new['app_password_sha256']}")
        return bool(changes) or rotated

    def _prepare_dir(self) -> None:
        user = self.os_user
        self.dir.mkdir(parents=True, exist_ok=True)
        for directory in (self.root, self.dir):
            os.chmod(directory, 0o711)  # traversable for the server's user, not listable
        if user.name is not None:
            for directory in plan_traversal(self.data_dir, self._traverse_root, user.uid):
                if directory == self._traverse_root or self._traverse_root in directory.parents:
                    os.chmod(directory, os.stat(directory).st_mode | 0o001)
            blocked = plan_traversal(self.data_dir, Path("/"), user.uid)
            if blocked:
                raise Unavailable(
                    f"user {user.name} cannot reach {self.dir}: {blocked[-1]} is not traversable",
                    f"run 'chmod o+x {blocked[-1]}' or put SLIPSTREAM_HOME elsewhere",
                )
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._own(self.data_dir, 0o700)
        if not self.log.exists():
            self.log.touch(mode=0o600)
        self._own(self.log, 0o600)

    def _write_conf(self, state: dict[str, Any]) -> None:
        text = render_redis_conf(
            port=int(state["port"]),
            spec=ServerSpec(str(state["policy"]), state["maxmemory_mb"], tuple(state["bind"])),
            data_dir=self.data_dir,
            pidfile=self.pidfile,
            logfile=self.log,
            app_password_sha256=str(state["app_password_sha256"]),
            admin_password_sha256=hash_password(str(state["admin_password"])),
        )
        tmp = self.conf.with_name(f".{self.conf.name}.tmp")
        tmp.write_text(text)
        self._own(tmp, 0o600)
        os.replace(tmp, self.conf)

    # Helpers ---------------------------------------------------------------------------------
    def _pid_from_pidfile(self) -> int | None:
        """The pid in ``data/redis.pid`` if it is a live process titled with our ``redis.conf``."""
        try:
            pid = int(self.pidfile.read_text().strip())
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE and str(self.conf) in " ".join(proc.cmdline()):
                return pid
        except (OSError, ValueError, psutil.Error):
            pass
        return None

    def _signal(self, pid: int, sig: signal.Signals) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def _wait_gone(self, pid: int, timeout: float) -> bool:
        started = self._load_state().get("create_time") or create_time_of(pid)
        if started is None:
            return True
        deadline = time.monotonic() + timeout
        while is_same_process(pid, started):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _own(self, path: Path, mode: int) -> None:
        """chmod ``path`` and, as root, hand it to the server's OS user."""
        os.chmod(path, mode)
        if self.os_user.name is not None:
            os.chown(path, self.os_user.uid, self.os_user.gid)

    def _read_log(self, offset: int) -> str:
        try:
            with self.log.open("rb") as handle:
                handle.seek(offset)
                return handle.read()[-20000:].decode(errors="replace")
        except OSError:
            return ""

    def _read_state(self) -> dict[str, Any] | None:
        """``server.json``, or None before the first start."""
        try:
            state: dict[str, Any] = json.loads(self.state_file.read_text())
        except FileNotFoundError:
            return None
        return state

    def _load_state(self) -> dict[str, Any]:
        state = self._read_state()
        if state is None:
            raise Unavailable(f"keyvalue {self.name} has not been started yet", "run 'slipstream apply'")
        return state

    def _initial_state(self, password: str | None, port: int | None) -> dict[str, Any]:
        """What a first start records: a free port (or the given one), a new admin login, the defaults."""
        if password is None:
            raise InvalidInput(f"keyvalue {self.name}: a first start needs the password", "pass the generated password")
        spec = ServerSpec()
        return {
            "port": port or free_port(),
            "port_confirmed": False,
            "admin_password": secrets.token_urlsafe(32),
            "app_password_sha256": hash_password(password),
            "policy": spec.policy,
            "maxmemory_mb": spec.maxmemory_mb,
            "bind": list(spec.bind),
            "pid": None,
            "create_time": None,
            "wanted": True,
        }

    def _save_state(self, state: dict[str, Any]) -> dict[str, Any]:
        tmp = self.state_file.with_name(f".{self.state_file.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(state, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.state_file)
        return state
