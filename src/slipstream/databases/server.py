"""The embedded PostgreSQL server: one cluster under ``<home>/postgres``, owned by slipstream.

Lifecycle of :meth:`EmbeddedServer.start` (every step is safe to repeat):
  1. pick the OS user: initdb and postgres refuse root, so as root the cluster runs as
     ``postgres`` (or a system user ``slipstream-pg`` created on first use), through ``setpriv``
     (see :func:`~slipstream.databases.commands.build_as_user` for why not ``user=``);
  2. lay out the root directory (0711, ours) and make its ancestors traversable for that user,
     but only up to ``traverse_root``; anything above must already be traversable;
  3. load ``cluster.json`` (0600: port, admin password) or create it with a free loopback port;
  4. if ``pgdata/postmaster.pid`` names a live server, ADOPT it and stop here: a daemon restart
     never restarts PostgreSQL;
  5. ``initdb`` when ``pgdata`` is empty; make the TLS files in ``tls/`` that are missing or no
     longer fit (see :func:`~slipstream.databases.tls.check_server_cert`), then (re)write
     ``slipstream.conf`` (port, listen addresses, own socket dir, TLS, WAL archiving into ``wal/``)
     and ``pg_hba.conf`` (passwords everywhere, TLS optional: loopback for every database, plus
     each database's ``ipAllowList`` rules kept in ``cluster.json``);
  6. ``pg_ctl start --wait``; postgres detaches into its own session, so it outlives the daemon.
An adopted server (step 4) whose TLS is off (started by an older slipstream) or whose certificate
is about to expire gets new files and a configuration reload, which TLS settings need no restart for.
:meth:`EmbeddedServer.stop` is ``pg_ctl stop --mode fast``.

Layout of the root directory::

    cluster.json     port, admin login (0600, slipstream's)
    pgdata/          PGDATA (0700, the OS user's)
    socket/          unix socket directory (0700, the OS user's)
    wal/             archived WAL segments (0700, the OS user's; see ``pitr.py``)
    base/            base backups for point-in-time recovery (see ``pitr.py``)
    tls/             0711, slipstream's: ca.crt (0644; clients verify with it), ca.key (0600),
                     server.crt and server.key (0644 and 0600, the OS user's); see ``tls.py``
    postgres.log     the server's own log
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import pwd
import secrets
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from slipstream import runner
from slipstream.databases import admin, tls
from slipstream.databases.commands import (
    INCLUDE_LINE,
    PG_ROOT,
    PostmasterPid,
    archive_settings,
    build_initdb_argv,
    build_pg_ctl_argv,
    find_pg_bin,
    parse_log_failure,
    parse_postmaster_pid,
    render_pg_hba,
    render_postgresql_conf,
)
from slipstream.databases.models import Endpoint
from slipstream.errors import CommandFailed, InvalidInput, Unavailable
from slipstream.osusers import build_as_user, plan_traversal

log = logging.getLogger("slipstream.databases")
SUPERUSER = "slipstream"
FALLBACK_OS_USER = "slipstream-pg"
START_ATTEMPTS = 3  # a freshly chosen port can be taken between choosing and binding
RELOAD_WAIT_S = 5.0  # how long an adopted server may take to apply a reload before we only log it


@dataclass(frozen=True)
class OsUser:
    """The unprivileged account the cluster runs as (None fields: run as ourselves)."""

    name: str | None
    uid: int
    gid: int


def check_listen(addresses: Sequence[str]) -> tuple[str, ...]:
    """The addresses PostgreSQL listens on: loopback always (apps connect there), plus any others."""
    out = ["127.0.0.1"]
    for raw in addresses:
        address = raw.strip()
        if not address or address in out:
            continue
        if address != "*":
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise InvalidInput(
                    f"SLIPSTREAM_POSTGRES_LISTEN: {address!r} is not an IP address",
                    "list addresses like 127.0.0.1,10.0.0.5, or * for every interface",
                ) from None
        out.append(address)
    return ("*",) if "*" in out else tuple(out)


def free_port(host: str = "127.0.0.1") -> int:
    """A loopback port nobody listens on right now (bind port 0 and ask)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def resolve_os_user() -> OsUser:
    """Ourselves when not root; else ``postgres``, or a ``slipstream-pg`` system user created now."""
    if os.geteuid() != 0:
        return OsUser(None, os.geteuid(), os.getegid())
    for name in ("postgres", FALLBACK_OS_USER):
        try:
            entry = pwd.getpwnam(name)
            return OsUser(name, entry.pw_uid, entry.pw_gid)
        except KeyError:
            continue
    runner.run(
        [
            "useradd",
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            FALLBACK_OS_USER,
        ]
    )
    entry = pwd.getpwnam(FALLBACK_OS_USER)
    return OsUser(FALLBACK_OS_USER, entry.pw_uid, entry.pw_gid)


class EmbeddedServer:
    """Start, adopt and stop the cluster under ``root``; see the module docstring for the steps."""

    def __init__(
        self,
        root: Path,
        *,
        port: int | None = None,
        traverse_root: Path | None = None,
        pg_root: Path = PG_ROOT,
        listen: Sequence[str] = ("127.0.0.1",),
    ) -> None:
        self.root = Path(root).absolute()
        self.pgdata = self.root / "pgdata"
        self.socket_dir = self.root / "socket"
        self.wal_dir = self.root / "wal"
        self.log = self.root / "postgres.log"
        self.state_file = self.root / "cluster.json"
        self.tls_dir = self.root / "tls"
        self.ca_file = self.tls_dir / "ca.crt"
        self._wanted_port = port
        self._listen = check_listen(listen)
        self._traverse_root = (Path(traverse_root) if traverse_root else self.root.parent).resolve()
        self._pg_root = pg_root
        self._os_user: OsUser | None = None
        self._state: dict[str, object] | None = None

    # Facts -----------------------------------------------------------------------------------
    @property
    def os_user(self) -> OsUser:
        """The account the server runs as (resolved on first use)."""
        if self._os_user is None:
            self._os_user = resolve_os_user()
        return self._os_user

    @property
    def bin_dir(self) -> Path:
        """The binaries matching the cluster's version (``PG_VERSION``), else the newest installed."""
        version_file = self.pgdata / "PG_VERSION"
        if version_file.exists():
            return find_pg_bin(self._pg_root, major=int(version_file.read_text().strip()))
        return find_pg_bin(self._pg_root)

    @property
    def port(self) -> int:
        """The port the server listens on (persisted in ``cluster.json``; chosen on first start)."""
        return int(str(self._load_state()["port"]))

    def admin_endpoint(self, dbname: str = "postgres") -> Endpoint:
        """The superuser login over loopback TCP."""
        state = self._load_state()
        return Endpoint("127.0.0.1", self.port, str(state["superuser"]), str(state["password"]), dbname)

    def postmaster(self) -> PostmasterPid | None:
        """What ``postmaster.pid`` says, or None when there is no (readable) pid file."""
        try:
            return parse_postmaster_pid((self.pgdata / "postmaster.pid").read_text())
        except (OSError, ValueError):
            return None

    def running(self) -> bool:
        """Whether a server is running on ``pgdata`` (``pg_ctl status``, which checks the pid is alive)."""
        if not (self.pgdata / "postmaster.pid").exists():
            return False
        result = self.run_as_owner(build_pg_ctl_argv(self.bin_dir, "status", self.pgdata), check=False, timeout=30)
        if result.returncode == 0:
            return not self.dead_postmaster()
        if result.returncode == 3:  # not running
            return False
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise Unavailable(
            f"cannot tell whether PostgreSQL runs on {self.pgdata}: {detail[-1] if detail else 'pg_ctl status failed'}",
            f"check that user {self.os_user.name or 'slipstream'} can reach {self.pgdata}",
        )

    def dead_postmaster(self) -> bool:
        """Cheap (no pg_ctl): True when ``postmaster.pid`` names a process that has exited (a killed
        postmaster nobody has reaped yet still passes ``kill(pid, 0)``); False while it runs and
        when there is no pid file (stopped cleanly)."""
        postmaster = self.postmaster()
        return postmaster is not None and _has_exited(postmaster.pid)

    # Lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Adopt a running server, or initdb (when empty) and start one; see the module docstring."""
        self._prepare_root()
        state = self._load_state(create=True)
        if self.running():
            pid = self.postmaster()
            if pid is not None and pid.port != state["port"]:
                self._save_state({**state, "port": pid.port})  # the live server is the truth
            self._refresh_tls()
            return
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(str(state["superuser"]), str(state["password"]))
        self._ensure_tls()
        for attempt in range(START_ATTEMPTS):
            self._write_config()
            offset = self.log.stat().st_size if self.log.exists() else 0
            try:
                self.run_as_owner(build_pg_ctl_argv(self.bin_dir, "start", self.pgdata, log=self.log), timeout=330)
                self._save_state({**self._load_state(), "port_confirmed": True})
                return
            except CommandFailed as exc:
                failure = parse_log_failure(self._read_log(offset)) or exc.message
                port_taken = "could not bind" in failure or "could not create any TCP/IP" in failure
                if (
                    port_taken
                    and not state.get("port_confirmed")
                    and self._wanted_port is None
                    and attempt + 1 < START_ATTEMPTS
                ):
                    state = {**self._load_state(), "port": free_port()}
                    self._save_state(state)
                    continue
                raise Unavailable(f"PostgreSQL did not start: {failure}", f"see {self.log}") from None

    def stop(self) -> None:
        """``pg_ctl stop --mode fast`` (rolls back open transactions); a no-op when not running."""
        if not self.running():
            return
        postmaster = self.postmaster()
        try:
            self.run_as_owner(build_pg_ctl_argv(self.bin_dir, "stop", self.pgdata), timeout=330)
        except CommandFailed as exc:
            raise Unavailable(f"PostgreSQL did not stop: {exc.message}", f"see {self.log}") from None
        if postmaster is not None:
            _wait_exited(postmaster.pid, STOP_EXIT_WAIT_S)

    # Steps -----------------------------------------------------------------------------------
    def _prepare_root(self) -> None:
        user = self.os_user
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o711)  # traversable for the server's user, not listable
        for directory in plan_traversal(self.pgdata, self._traverse_root, user.uid):
            if directory == self._traverse_root or self._traverse_root in directory.parents:
                os.chmod(directory, os.stat(directory).st_mode | 0o001)
        blocked = plan_traversal(self.pgdata, Path("/"), user.uid)
        if blocked:
            raise Unavailable(
                f"user {user.name} cannot reach {self.root}: {blocked[-1]} is not traversable",
                f"run 'chmod o+x {blocked[-1]}' or put SLIPSTREAM_HOME elsewhere",
            )
        for directory in (self.pgdata, self.socket_dir, self.wal_dir):
            directory.mkdir(mode=0o700, exist_ok=True)
            self.own(directory, 0o700)
        if not self.log.exists():
            self.log.touch(mode=0o600)
        self.own(self.log, 0o600)

    def _initdb(self, superuser: str, password: str) -> None:
        pwfile = self.root / f".initdb-{secrets.token_hex(4)}"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, password.encode() + b"\n")
            os.close(fd)
            self.own(pwfile, 0o600)
            self.run_as_owner(build_initdb_argv(self.bin_dir, self.pgdata, superuser, pwfile), timeout=120)
        finally:
            pwfile.unlink(missing_ok=True)
        conf = self.pgdata / "postgresql.conf"
        with conf.open("a") as handle:
            handle.write(f"\n# slipstream's settings (port, listen address, socket dir)\n{INCLUDE_LINE}\n")

    def set_access(self, lines: Sequence[str]) -> None:
        """Make ``lines`` (``ipAllowList`` rules) the extra ``pg_hba.conf`` entries: kept in
        ``cluster.json`` for every later start, written now, and reloaded when the server runs."""
        state = self._load_state(create=True)
        if list(lines) == _hba_extra(state) and (self.pgdata / "pg_hba.conf").exists():
            return
        self._save_state({**state, "hba_extra": list(lines)})
        if (self.pgdata / "PG_VERSION").exists():
            self.write_owned(self.pgdata / "pg_hba.conf", render_pg_hba(list(lines)))
            if self.running():
                with admin.connect(self.admin_endpoint()) as conn:
                    conn.execute("SELECT pg_reload_conf()")

    def _write_config(self) -> None:
        try:
            archiving = archive_settings(self.wal_dir)
        except InvalidInput as exc:  # the server still runs; only point-in-time recovery is off
            log.warning("WAL archiving is off: %s", exc.message)
            archiving = []
        ssl = tls.render_ssl_settings(self.tls_dir / "server.crt", self.tls_dir / "server.key")
        conf = render_postgresql_conf(self.port, self.socket_dir, listen=self._listen, extra=[*ssl, *archiving])
        self.write_owned(self.pgdata / "slipstream.conf", conf)
        extra = _hba_extra(self._load_state())
        self.write_owned(self.pgdata / "pg_hba.conf", render_pg_hba(extra))

    def _ensure_tls(self, *, keep_names: bool = False) -> bool:
        """Make the CA and the server certificate where missing, unreadable or expiring, and (unless
        ``keep_names``) re-issue the server certificate for changed listen addresses; True when files changed."""
        now = dt.datetime.now(dt.UTC)
        self.tls_dir.mkdir(mode=0o711, exist_ok=True)
        os.chmod(self.tls_dir, 0o711)  # the server's user enters it; only slipstream lists it
        ca_key = self.tls_dir / "ca.key"
        ca = _read_pair(ca_key, self.ca_file)
        changed = False
        problem = tls.check_ca(ca, now)
        if ca is None or problem is not None:
            log.info("PostgreSQL TLS: making a new CA in %s (%s)", self.tls_dir, problem)
            ca = tls.build_ca(now)
            _write_bytes(ca_key, ca.key, 0o600)
            _write_bytes(self.ca_file, ca.cert, 0o644)
            changed = True
        names = self.cert_names()
        server_key, server_cert = self.tls_dir / "server.key", self.tls_dir / "server.crt"
        problem = tls.check_server_cert(_read_pair(server_key, server_cert), ca.cert, names, now)
        if problem is None or (keep_names and problem is tls.CertProblem.NAMES):
            return changed
        log.info("PostgreSQL TLS: issuing a server certificate for %s (%s)", ", ".join(names), problem)
        server = tls.build_server_cert(ca, names, now)
        owner = self.os_user if os.geteuid() == 0 else None
        _write_bytes(server_key, server.key, 0o600, owner)
        _write_bytes(server_cert, server.cert, 0o644, owner)
        return True

    def cert_names(self) -> tuple[str, ...]:
        """What the server certificate covers: loopback, the listen addresses, and for ``*`` this host's addresses."""
        addresses = [
            entry.address
            for entries in psutil.net_if_addrs().values()
            for entry in entries
            if entry.family in (socket.AF_INET, socket.AF_INET6)
        ]
        return tls.plan_cert_names(self._listen, socket.gethostname(), addresses)

    def _refresh_tls(self) -> None:
        """Give an adopted server TLS, or a renewed certificate, by a reload (no restart, no dropped session)."""
        changed = self._ensure_tls(keep_names=True)  # new addresses only take effect at a start
        try:
            if not changed and self._ssl_setting() == "on":
                return
            self._write_config()
            with admin.connect(self.admin_endpoint()) as conn:
                conn.execute("SELECT pg_reload_conf()")
            deadline = time.monotonic() + RELOAD_WAIT_S
            while self._ssl_setting() != "on":
                if time.monotonic() > deadline:
                    log.warning("PostgreSQL did not turn TLS on after a reload; see %s", self.log)
                    return
                time.sleep(0.05)
        except Unavailable as exc:  # the server runs but refuses us now: TLS waits for its next start
            log.warning("PostgreSQL TLS is left as it is until the next start: %s", exc.message)

    def _ssl_setting(self) -> str:
        with admin.connect(self.admin_endpoint()) as conn:
            row = conn.execute("SHOW ssl").fetchone()
        return str(row[0]) if row else ""

    # Helpers ---------------------------------------------------------------------------------
    def run_as_owner(
        self, argv: list[str], *, check: bool = True, timeout: float = 60, env: dict[str, str] | None = None
    ) -> runner.Result:
        """Run a server command as the cluster's OS user, from a directory that user can enter."""
        base = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "TZ": "UTC", **(env or {})}
        return runner.run(build_as_user(argv, self.os_user.name), cwd=self.root, check=check, timeout=timeout, env=base)

    def own(self, path: Path, mode: int) -> None:
        """chmod ``path`` and, as root, hand it to the cluster's OS user."""
        os.chmod(path, mode)
        if os.geteuid() == 0 and self.os_user.name is not None:
            os.chown(path, self.os_user.uid, self.os_user.gid)

    def write_owned(self, path: Path, text: str) -> None:
        """Write ``path`` atomically, 0600 and owned by the cluster's OS user."""
        _write_bytes(path, text.encode(), 0o600, self.os_user if os.geteuid() == 0 else None)

    def _read_log(self, offset: int) -> str:
        try:
            with self.log.open("rb") as handle:
                handle.seek(offset)
                return handle.read()[-20000:].decode(errors="replace")
        except OSError:
            return ""

    def _load_state(self, *, create: bool = False) -> dict[str, object]:
        if self._state is None:
            if self.state_file.exists():
                self._state = json.loads(self.state_file.read_text())
            elif create:
                self._save_state(
                    {
                        "port": self._wanted_port or free_port(),
                        "superuser": SUPERUSER,
                        "password": secrets.token_urlsafe(24),
                        "port_confirmed": False,
                    }
                )
            else:
                raise Unavailable(
                    f"the PostgreSQL cluster in {self.root} has not been started yet", "run 'slipstream up'"
                )
        assert self._state is not None
        if self._wanted_port is not None and self._state["port"] != self._wanted_port and create:
            self._save_state({**self._state, "port": self._wanted_port, "port_confirmed": False})
        return self._state

    def _save_state(self, state: dict[str, object]) -> None:
        tmp = self.state_file.with_name(".cluster.json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(state, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.state_file)
        self._state = dict(state)


def _write_bytes(path: Path, data: bytes, mode: int, owner: OsUser | None = None) -> None:
    """Write ``path`` atomically with ``mode`` (never wider on the way), handed to ``owner`` if given."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, mode)
    if owner is not None and owner.name is not None:
        os.chown(tmp, owner.uid, owner.gid)
    os.replace(tmp, path)


def _read_pair(key: Path, cert: Path) -> tls.KeyPair | None:
    """A key and certificate from disk, or None when either is missing or unreadable."""
    try:
        return tls.KeyPair(key.read_bytes(), cert.read_bytes())
    except OSError:
        return None


def _hba_extra(state: dict[str, object]) -> list[str]:
    """The ``ipAllowList`` pg_hba lines kept in ``cluster.json``."""
    lines = state.get("hba_extra")
    return [str(line) for line in lines] if isinstance(lines, list) else []


# pg_ctl stop returns once postmaster.pid is gone; the postmaster unlinks it just before it exits,
# so its process can still be there for a moment (seen on a loaded machine)
STOP_EXIT_WAIT_S = 5.0


def _wait_exited(pid: int, timeout: float) -> None:
    """Wait (at most ``timeout`` s) until ``pid`` has exited: gone, or a zombie its parent has not
    reaped yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not _has_exited(pid):
        time.sleep(0.02)


def _has_exited(pid: int) -> bool:
    """True when ``pid`` is gone, or a zombie its parent has not reaped yet."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return True
