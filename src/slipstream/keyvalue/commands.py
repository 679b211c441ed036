"""Pure builders for the Redis side: the ``redis.conf`` of one server, its argv, its listen
addresses, and parsers for what the server says (``INFO``, its log, a config error).

Nothing here runs a command; :mod:`slipstream.keyvalue.server` does. No password appears in a
config file or an argv: ``redis.conf`` holds SHA-256 hashes of the two users' passwords.

Decisions, each with its reason:
- **Persistence**: AOF on, ``appendfsync everysec`` (Render's documented setting) and no RDB
  snapshots (``save ""``): AOF is the durable copy, and a snapshot is a fork of the whole dataset
  on a timer. AOF rewrites keep the file proportional to the data. The price of ``everysec``
  (measured here, with a killed server): while a slow fsync runs, Redis holds new writes back
  for up to 2 s yet acknowledges them, so a crash loses up to ~2 s of writes; what it has written
  (``INFO`` ``aof_buffer_length`` 0) survives a ``kill -9``. ``always`` would fsync every write.
- **Users, not rename-command**: apps log in as ``default`` (the user Render's URLs name) with
  every command except those that change what slipstream owns: settings (``CONFIG SET``, which
  could bind 0.0.0.0 against ``ipAllowList: []``, lift ``maxmemory`` or turn persistence off),
  users (``ACL SETUSER``...), the server's life (``SHUTDOWN``) and its role (``REPLICAOF``).
  slipstream logs in as ``slipstream`` to change settings live. ``rename-command`` would hide those
  commands from slipstream too, and Redis' own docs call it a legacy of the pre-ACL days.
  ``DEBUG``, ``MODULE`` and protected configs (``dir``, ``dbfilename``) stay disabled for everyone.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from slipstream.errors import InvalidInput, Unavailable
from slipstream.keyvalue.models import ADMIN_USER, APP_USER, HOST, ServerSpec, ServerStatus, check_policy
from slipstream.osusers import build_as_user

# Commands an app's ``default`` user may not run (everything else in Redis it may).
APP_DENIED = (
    "config|set",
    "config|rewrite",
    "acl|setuser",
    "acl|deluser",
    "acl|load",
    "acl|save",
    "shutdown",
    "replicaof",
    "slaveof",
    "failover",
)
PROC_TITLE = "{title} {listen-addr} {config-file}"  # the config path in ps output names the server


def find_redis_server() -> Path:
    """The ``redis-server`` binary on PATH."""
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin:/bin")
    if not found:
        raise Unavailable("redis-server is not installed", "apt-get install redis-server (or run 'make install')")
    return Path(found)


def hash_password(password: str) -> str:
    """The SHA-256 hex digest Redis' ACL accepts in place of a password (``#<hash>``)."""
    if not password:
        raise InvalidInput("an empty keyvalue password is not allowed", "generate one")
    return hashlib.sha256(password.encode()).hexdigest()


def build_server_argv(redis_server: Path, conf: Path, os_user: str | None) -> list[str]:
    """``redis-server CONF`` run as ``os_user`` (it daemonizes into its own session by itself)."""
    return build_as_user([str(redis_server), str(conf)], os_user)


def plan_bind(allow: Sequence[str], listen: Sequence[str]) -> tuple[str, ...]:
    """The addresses a server binds: loopback only without ``ipAllowList`` entries, else also ``listen``.

    Redis cannot filter clients by source address, so the CIDRs only decide whether the extra
    addresses open at all; narrowing them to the listed sources is a firewall's job.
    """
    for cidr in allow:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            raise InvalidInput(
                f"ipAllowList source {cidr!r} is not a CIDR block", "write it like 203.0.113.0/24 or 0.0.0.0/0"
            ) from None
    extra: list[str] = []
    for raw in listen:
        try:
            address = str(ipaddress.ip_address("0.0.0.0" if raw.strip() == "*" else raw.strip()))
        except ValueError:
            raise InvalidInput(
                f"keyvalue listen address {raw!r} is not an IP address", "list addresses like 10.0.0.5, or * for all"
            ) from None
        if address not in extra and address != HOST:
            extra.append(address)
    if not allow:
        return (HOST,)
    # A wildcard covers its family's other addresses, and binding both would collide on the port.
    v4 = [a for a in (HOST, *extra) if ":" not in a]
    v6 = [a for a in extra if ":" in a]
    return (*(["0.0.0.0"] if "0.0.0.0" in v4 else v4), *(["::"] if "::" in v6 else v6))


def _conf_string(value: str, what: str) -> str:
    if any(ch in value for ch in '"\\') or not value.isprintable():
        raise InvalidInput(f"{what} {value!r} cannot be written into redis.conf", "use a path without quotes")
    return f'"{value}"'


def render_redis_conf(
    *,
    port: int,
    spec: ServerSpec,
    data_dir: Path,
    pidfile: Path,
    logfile: Path,
    app_password_sha256: str,
    admin_password_sha256: str,
) -> str:
    """The whole ``redis.conf`` of one server (written by slipstream on every start)."""
    check_policy(spec.policy)
    for digest in (app_password_sha256, admin_password_sha256):
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ValueError("password hashes must be SHA-256 hex digests")
    maxmemory = f"{spec.maxmemory_mb}mb" if spec.maxmemory_mb else "0"
    lines = [
        "# Written by slipstream on every start; edits here are overwritten.",
        f"port {int(port)}",
        f"bind {' '.join(spec.bind)}",
        "protected-mode yes",
        "daemonize yes",
        f"pidfile {_conf_string(str(pidfile), 'pidfile')}",
        f"logfile {_conf_string(str(logfile), 'logfile')}",
        "loglevel notice",
        "set-proc-title yes",
        f'proc-title-template "{PROC_TITLE}"',
        f"dir {_conf_string(str(data_dir), 'data directory')}",
        "# Persistence: append-only file, fsync once a second; no RDB snapshots.",
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        "# Memory",
        f"maxmemory {maxmemory}",
        f"maxmemory-policy {spec.policy}",
        "# Access: apps are 'default'; slipstream is 'slipstream'. Passwords are SHA-256 hashes.",
        "enable-debug-command no",
        "enable-module-command no",
        "enable-protected-configs no",
        f"user {APP_USER} reset on #{app_password_sha256} ~* &* +@all {' '.join('-' + c for c in APP_DENIED)}",
        f"user {ADMIN_USER} reset on #{admin_password_sha256} ~* &* +@all",
    ]
    return "\n".join(lines) + "\n"


def plan_config_changes(live: Mapping[str, str], spec: ServerSpec) -> list[tuple[str, str]]:
    """The ``CONFIG SET`` pairs that bring a running server (``CONFIG GET`` values) to ``spec``."""
    wanted = {
        "maxmemory": str(spec.maxmemory_mb * 1024 * 1024 if spec.maxmemory_mb else 0),
        "maxmemory-policy": spec.policy,
        "bind": " ".join(spec.bind),
    }
    return [(key, value) for key, value in wanted.items() if live.get(key) != value]


# Parsers -------------------------------------------------------------------------------------
def parse_info(text: str) -> dict[str, str]:
    """``INFO`` output as one flat mapping (``redis_version`` -> ``7.0.15``); section headers dropped."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, value = line.split(":", 1)
        out[key.strip()] = value.strip()
    return out


def summarize_info(info: Mapping[str, str]) -> ServerStatus:
    """The :class:`ServerStatus` in a parsed ``INFO``; ValueError names a missing field."""
    try:
        return ServerStatus(
            version=info["redis_version"],
            pid=int(info["process_id"]),
            port=int(info["tcp_port"]),
            uptime_s=int(info["uptime_in_seconds"]),
            used_memory=int(info["used_memory"]),
            maxmemory=int(info["maxmemory"]),
            policy=info["maxmemory_policy"],
            aof_enabled=info["aof_enabled"] == "1",
            aof_last_write_ok=info.get("aof_last_write_status", "ok") == "ok",
            aof_pending_bytes=int(info.get("aof_buffer_length", "0")),
            connected_clients=int(info["connected_clients"]),
            loading=info.get("loading") == "1",
        )
    except KeyError as exc:
        raise ValueError(f"INFO has no {exc.args[0]!r} field") from None


@dataclass(frozen=True)
class LogLine:
    """One line of a Redis log: ``1234:M 02 Dec 2026 12:41:06.509 # message``."""

    pid: int
    level: str  # '.' debug, '-' verbose, '*' notice, '#' warning
    message: str


_LOG_LINE = re.compile(r"^(\d+):[XCSM] \d{1,2} \w{3} \d{4} [\d:.]+ ([.*#-]) (.*)$")
_FATAL = ("aborting", "Fatal", "FATAL", "Can't", "Bad file format", "Unrecoverable", "exiting")


def parse_log(text: str) -> list[LogLine]:
    """The well-formed lines of a Redis log (anything else, such as the ASCII logo, is skipped)."""
    out = []
    for line in text.splitlines():
        match = _LOG_LINE.match(line)
        if match:
            out.append(LogLine(int(match.group(1)), match.group(2), match.group(3).strip()))
    return out


def parse_log_failure(text: str) -> str | None:
    """Why a server stopped, from its log tail: the cause line before Redis' 'aborting', or None."""
    lines = [line for line in parse_log(text) if line.level == "#"]
    fatal = next((i for i, line in enumerate(lines) if any(word in line.message for word in _FATAL)), None)
    if fatal is None:
        return None
    for line in lines[:fatal]:
        if "Could not create server TCP listening socket" in line.message:
            return line.message.removeprefix("Warning: ")
    return lines[fatal].message


def parse_config_error(stderr: str) -> str:
    """The gist of ``*** FATAL CONFIG FILE ERROR ***`` output: ``line 2: 'x y': Bad directive...``."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    where = next((line for line in lines if line.startswith("Reading the configuration file, at line")), None)
    quoted = next((line[4:] for line in lines if line.startswith(">>> ")), None)
    reason = lines[-1] if lines else "no output"
    if where and quoted:
        return f"line {where.rsplit(' ', 1)[-1]}: {quoted}: {reason}"
    return reason
