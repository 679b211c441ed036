"""Pure builders for the PostgreSQL side: binary lookup, argv lists, client environments,
``postgresql.conf``/``pg_hba.conf`` text, and parsers for what the server leaves on disk.

Nothing here runs a command; :mod:`slipstream.databases.server` and
:mod:`slipstream.databases.backups` pass these lists to :func:`slipstream.runner.run`.
Passwords never appear in an argv: they travel in ``PGPASSWORD`` (see :func:`build_client_env`).
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict

from slipstream.databases.models import Endpoint
from slipstream.errors import InvalidInput, Unavailable

PG_ROOT = Path("/usr/lib/postgresql")
LOCALE = "C.UTF-8"
CLIENT_PATH = "/usr/local/bin:/usr/bin:/bin"

# libpq keywords an admin URL may carry, and the environment variable each one travels in.
_LIBPQ_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "channel_binding": "PGCHANNELBINDING",
    "gssencmode": "PGGSSENCMODE",
    "options": "PGOPTIONS",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "application_name": "PGAPPNAME",
    "passfile": "PGPASSFILE",
}


# Binaries ------------------------------------------------------------------------------------
def find_pg_bin(root: Path = PG_ROOT, major: int | None = None) -> Path:
    """The ``bin`` directory of the newest installed PostgreSQL (or of ``major``): ``/usr/lib/postgresql/15/bin``."""
    found: list[tuple[int, Path]] = []
    if root.is_dir():
        for child in root.iterdir():
            if child.name.isdigit() and (child / "bin" / "pg_ctl").exists():
                found.append((int(child.name), child / "bin"))
    if major is not None:
        for version, path in found:
            if version == major:
                return path
        raise Unavailable(
            f"PostgreSQL {major} binaries are not installed (the cluster was created by {major})",
            f"apt-get install postgresql-{major}, or upgrade the cluster with pg_upgrade",
        )
    if found:
        return max(found)[1]
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path).resolve().parent
    raise Unavailable(
        f"PostgreSQL server binaries were not found under {root} or on PATH", "apt-get install postgresql"
    )


# Cluster lifecycle ---------------------------------------------------------------------------
def build_initdb_argv(bin_dir: Path, pgdata: Path, superuser: str, pwfile: Path) -> list[str]:
    """``initdb`` for a UTF-8 cluster with data checksums and password authentication everywhere."""
    return [
        str(bin_dir / "initdb"),
        "--pgdata",
        str(pgdata),
        "--username",
        superuser,
        "--pwfile",
        str(pwfile),
        "--auth",
        "scram-sha-256",
        "--encoding",
        "UTF8",
        "--locale",
        LOCALE,
        "--data-checksums",
        "--no-instructions",
    ]


def build_pg_ctl_argv(
    bin_dir: Path, action: str, pgdata: Path, *, log: Path | None = None, timeout_s: int = 300
) -> list[str]:
    """``pg_ctl start|stop|status`` waiting up to ``timeout_s`` (crash recovery can take minutes; stop is fast mode)."""
    argv = [str(bin_dir / "pg_ctl"), action, "--pgdata", str(pgdata)]
    if action == "start":
        if log is None:
            raise ValueError("pg_ctl start needs a log file")
        argv += ["--log", str(log), "--wait", "--timeout", str(timeout_s), "--silent"]
    elif action == "stop":
        argv += ["--mode", "fast", "--wait", "--timeout", str(timeout_s), "--silent"]
    elif action != "status":
        raise ValueError(f"unknown pg_ctl action {action!r}")
    return argv


def _conf_string(value: str) -> str:
    if "'" in value or "\n" in value or "\\" in value:
        raise InvalidInput(f"{value!r} cannot be written into postgresql.conf", "use a path without quotes")
    return f"'{value}'"


def archive_settings(wal_dir: Path) -> list[str]:
    """``postgresql.conf`` lines that copy each finished WAL segment into ``wal_dir`` (never overwriting)."""
    if "'" in str(wal_dir) or " " in str(wal_dir) or "\\" in str(wal_dir):
        raise InvalidInput(
            f"{wal_dir} cannot hold the WAL archive (quotes or spaces in the path)",
            "put SLIPSTREAM_HOME on a path without them",
        )
    return [
        "wal_level = replica",
        "archive_mode = on",
        f"archive_command = 'test ! -f {wal_dir}/%f && cp %p {wal_dir}/%f'",
    ]


def recovery_settings(wal_dir: Path, target: datetime.datetime) -> list[str]:
    """The lines that make a copied cluster replay archived WAL up to ``target`` and then promote."""
    when = target.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
    return [
        "archive_mode = off",
        "hot_standby = off",
        f"restore_command = 'cp {wal_dir}/%f %p'",
        f"recovery_target_time = '{when}'",
        "recovery_target_action = 'promote'",
    ]


def render_postgresql_conf(
    port: int, socket_dir: Path, listen: Sequence[str] = ("127.0.0.1",), extra: Sequence[str] = ()
) -> str:
    """The settings slipstream owns, written to ``slipstream.conf`` and included from ``postgresql.conf``."""
    lines = [
        "# Written by slipstream on every start; edit postgresql.conf for your own settings.",
        f"listen_addresses = {_conf_string(','.join(listen))}",
        f"port = {int(port)}",
        f"unix_socket_directories = {_conf_string(str(socket_dir))}",
        "unix_socket_permissions = 0700",
        "password_encryption = 'scram-sha-256'",
        "log_line_prefix = '%m [%p] %q%u@%d '",
        "log_timezone = 'UTC'",
        "timezone = 'UTC'",
        *extra,
    ]
    return "\n".join(lines) + "\n"


INCLUDE_LINE = "include_if_exists = 'slipstream.conf'"


def build_hba_lines(database: str, user: str, cidrs: Iterable[str]) -> list[str]:
    """``pg_hba.conf`` lines letting ``user`` reach ``database`` from each CIDR of an ``ipAllowList``."""
    lines = []
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise InvalidInput(
                f"ipAllowList source {cidr!r} is not a CIDR block", "write it like 203.0.113.0/24 or 0.0.0.0/0"
            ) from None
        lines.append(f"host {database} {user} {network} scram-sha-256")
    return lines


def render_pg_hba(extra_lines: Sequence[str] = ()) -> str:
    """The whole ``pg_hba.conf``: loopback and the socket with passwords, then any ``ipAllowList`` lines."""
    base = [
        "# Written by slipstream. TYPE DATABASE USER ADDRESS METHOD",
        "local all all scram-sha-256",
        "host all all 127.0.0.1/32 scram-sha-256",
        "host all all ::1/128 scram-sha-256",
        "local replication all scram-sha-256",  # pg_basebackup (point-in-time recovery)
        "host replication all 127.0.0.1/32 scram-sha-256",
    ]
    return "\n".join([*base, *extra_lines]) + "\n"


@dataclass(frozen=True)
class PostmasterPid:
    """What ``postmaster.pid`` says about a running server."""

    pid: int
    data_dir: Path
    start_time: int
    port: int
    socket_dir: str
    listen: str
    status: str


def parse_postmaster_pid(text: str) -> PostmasterPid:
    """Parse ``postmaster.pid`` (one value per line: pid, data dir, start time, port, socket, listen, key, status)."""
    lines = text.splitlines()
    if len(lines) < 4 or not lines[0].strip().isdigit():
        raise ValueError("postmaster.pid is incomplete")
    extra = [*lines[4:], "", "", "", ""]
    return PostmasterPid(
        pid=int(lines[0]),
        data_dir=Path(lines[1]),
        start_time=int(lines[2] or 0),
        port=int(lines[3]),
        socket_dir=extra[0].strip(),
        listen=extra[1].strip(),
        status=extra[3].strip(),
    )


# Clients (pg_dump, pg_restore, psql) --------------------------------------------------------
def parse_admin_url(url: str) -> Endpoint:
    """An :class:`Endpoint` from an operator's admin URL (``postgresql://user:pass@host:port/db?sslmode=...``)."""
    try:
        params = conninfo_to_dict(url)
    except Exception as exc:  # psycopg raises ProgrammingError with libpq's message
        raise InvalidInput(
            f"the PostgreSQL admin URL is not valid: {str(exc).strip()}",
            "use postgresql://USER:PASSWORD@HOST:PORT/DBNAME",
        ) from None
    user = str(params.pop("user", "") or "")
    if not user:
        raise InvalidInput("the PostgreSQL admin URL names no user", "use postgresql://USER:PASSWORD@HOST:PORT/DBNAME")
    host = str(params.pop("host", "") or "127.0.0.1")
    raw_port = str(params.pop("port", "") or "5432")
    if not raw_port.isdigit() or not 0 < int(raw_port) < 65536:
        raise InvalidInput(
            f"the PostgreSQL admin URL is not valid: port {raw_port!r} is not a port number",
            "use postgresql://USER:PASSWORD@HOST:PORT/DBNAME",
        )
    port = int(raw_port)
    password = params.pop("password", None)
    dbname = str(params.pop("dbname", "") or "postgres")
    unknown = sorted(k for k in params if k not in _LIBPQ_ENV)
    if unknown:
        raise InvalidInput(
            f"the PostgreSQL admin URL has unsupported parameters: {', '.join(unknown)}",
            f"supported: {', '.join(sorted(_LIBPQ_ENV))}",
        )
    options = tuple(sorted((k, str(v)) for k, v in params.items()))
    return Endpoint(host, port, user, str(password) if password is not None else None, dbname, options)


def build_conninfo(endpoint: Endpoint) -> dict[str, str | int]:
    """Keyword arguments for ``psycopg.connect`` (a dict, so no password is ever formatted into a string)."""
    kw: dict[str, str | int] = {
        "host": endpoint.host,
        "port": endpoint.port,
        "user": endpoint.user,
        "dbname": endpoint.dbname,
        "connect_timeout": 10,
        "application_name": "slipstream",
    }
    if endpoint.password is not None:
        kw["password"] = endpoint.password
    kw.update(dict(endpoint.options))
    return kw


def build_client_env(endpoint: Endpoint, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a libpq client: the password in ``PGPASSWORD``, no ``~/.pgpass``/``~/.psqlrc``."""
    env = {
        "PATH": CLIENT_PATH,
        "LC_ALL": LOCALE,
        "PGCONNECT_TIMEOUT": "10",
        "PGAPPNAME": "slipstream",
        "PGPASSFILE": "/dev/null",
        "PSQLRC": "/dev/null",
    }
    env.update(base or {})
    for key, value in endpoint.options:
        env[_LIBPQ_ENV[key]] = value
    if endpoint.password is not None:
        env["PGPASSWORD"] = endpoint.password
    return env


def _connection_flags(endpoint: Endpoint) -> list[str]:
    return [
        "--host",
        endpoint.host,
        "--port",
        str(endpoint.port),
        "--username",
        endpoint.user,
        "--dbname",
        endpoint.dbname,
        "--no-password",
    ]


def build_pg_dump_argv(bin_dir: Path, endpoint: Endpoint, out: Path, *, snapshot: str | None = None) -> list[str]:
    """``pg_dump`` of one database in custom format (compressed, selective restore) into ``out``."""
    argv = [str(bin_dir / "pg_dump"), *_connection_flags(endpoint), "--format", "custom", "--file", str(out)]
    if snapshot:
        argv += ["--snapshot", snapshot]
    return argv


def build_pg_restore_argv(bin_dir: Path, endpoint: Endpoint, archive: Path, *, clean: bool) -> list[str]:
    """``pg_restore`` of ``archive`` into ``endpoint``'s database in one transaction (all or nothing)."""
    argv = [str(bin_dir / "pg_restore"), *_connection_flags(endpoint), "--single-transaction", "--exit-on-error"]
    if clean:
        argv += ["--clean", "--if-exists"]
    return [*argv, str(archive)]


def build_pg_restore_list_argv(bin_dir: Path, archive: Path) -> list[str]:
    """``pg_restore --list``: reads the archive's table of contents, which fails on a damaged file."""
    return [str(bin_dir / "pg_restore"), "--list", str(archive)]


def build_psql_argv(bin_dir: Path, endpoint: Endpoint) -> list[str]:
    """An interactive ``psql`` for ``endpoint``; the password goes in ``PGPASSWORD`` (see :func:`build_client_env`)."""
    return [str(bin_dir / "psql"), *_connection_flags(endpoint)]


_LOG_ERROR = re.compile(r"\b(FATAL|PANIC|ERROR|LOG):\s+(.*)")


def parse_log_failure(log_tail: str) -> str | None:
    """The most telling line of a server log tail (last FATAL/PANIC, else last ERROR), for an error message."""
    best: tuple[int, str] | None = None
    rank = {"PANIC": 3, "FATAL": 3, "ERROR": 2, "LOG": 0}
    for line in log_tail.splitlines():
        match = _LOG_ERROR.search(line)
        level = rank[match.group(1)] if match else 0
        if match and level > 0 and (best is None or level >= best[0]):
            best = (level, f"{match.group(1)}: {match.group(2).strip()}")
    return best[1] if best else None


def parse_client_error(stderr: str) -> str:
    """The line of pg_dump/pg_restore output that says what went wrong (``pg_restore: error: ...``)."""
    lines = [" ".join(line.split()) for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if "error:" in line:
            reason = line.split("error:", 1)[1].strip()
            return reason.removeprefix("could not execute query:").strip()
    return lines[-1] if lines else "no output"
