"""Settings, read once from the environment. The only module that reads ``os.environ``.

Every knob is a typed field of :class:`Settings` with its variable, default and one line of doc
(``KNOBS``); ``docs/operations.md`` lists them and a test keeps the two in step. A value that
cannot be used raises :class:`SettingsError` naming the variable. Every path slipstream writes is
derived from ``home`` (``$SLIPSTREAM_HOME``).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from slipstream import failpoints


class SettingsError(ValueError):
    """Raised when an environment variable holds a value slipstream cannot use."""


def _env(name: str, doc: str) -> Any:
    """Field metadata: the variable a setting comes from and what it does (for the docs)."""
    return {"env": name, "doc": doc}


@dataclass(frozen=True)
class Settings:
    """Where slipstream keeps its state, which loopback ports it uses, and its timings."""

    home: Path = field(
        metadata=_env(
            "SLIPSTREAM_HOME", "all state (root's home is 0700, which PostgreSQL's unprivileged user could not enter)"
        )
    )
    http_port: int = field(default=8080, metadata=_env("SLIPSTREAM_HTTP_PORT", "HAProxy's HTTP port for web services"))
    bind_host: str = field(default="127.0.0.1", metadata=_env("SLIPSTREAM_BIND", "address HAProxy listens on"))
    postgres_admin_url: str | None = field(
        default=None,
        metadata=_env("SLIPSTREAM_POSTGRES_ADMIN_URL", "use this PostgreSQL server instead of the embedded cluster"),
    )
    postgres_listen: tuple[str, ...] = field(
        default=("127.0.0.1",),
        metadata=_env(
            "SLIPSTREAM_POSTGRES_LISTEN",
            "addresses PostgreSQL listens on, comma-separated (`*`: all; loopback is always kept; "
            "remote clients also need the database's ipAllowList)",
        ),
    )
    keyvalue_listen: tuple[str, ...] = field(
        default=("127.0.0.1",),
        metadata=_env(
            "SLIPSTREAM_KEYVALUE_LISTEN",
            "addresses a key value entry with an ipAllowList also listens on, comma-separated",
        ),
    )
    health_deadline_s: float = field(
        default=900.0,
        metadata=_env("SLIPSTREAM_HEALTH_DEADLINE", "seconds a running new release may take to pass its check"),
    )
    min_healthy_s: float = field(
        default=0.0,
        metadata=_env(
            "SLIPSTREAM_MIN_HEALTHY_SECONDS",
            "seconds new instances must stay healthy before the flip (opt-in; rollbacks skip it)",
        ),
    )
    settle_s: float = field(
        default=2.0,
        metadata=_env(
            "SLIPSTREAM_SETTLE_SECONDS",
            "seconds after the flip in which a failing new instance moves traffic back to the old release",
        ),
    )
    worker_grace_s: float = field(
        default=2.0,
        metadata=_env("SLIPSTREAM_WORKER_GRACE", "seconds a new worker must keep running to count as healthy"),
    )
    failpoints: tuple[str, ...] = field(
        default=(),
        metadata=_env(
            "SLIPSTREAM_FAILPOINTS",
            "tests only: deploy steps at which the daemon kills itself with SIGKILL, comma-separated "
            "(the chaos suite; names in slipstream/failpoints.py)",
        ),
    )
    overlap: str = field(
        default="override",
        metadata=_env(
            "SLIPSTREAM_OVERLAP",
            "`override`: a new deploy cancels the one in progress (Render's default); `wait`: it waits",
        ),
    )
    cron_max_s: float = field(
        default=12 * 3600.0, metadata=_env("SLIPSTREAM_CRON_MAX_SECONDS", "longest a cron run may take")
    )
    live_check_interval_s: float = field(
        default=5.0,
        metadata=_env("SLIPSTREAM_LIVE_CHECK_INTERVAL", "seconds between health checks of live instances"),
    )
    unroute_after_s: float = field(
        default=15.0,
        metadata=_env("SLIPSTREAM_UNROUTE_AFTER", "seconds of failing checks before a live instance leaves rotation"),
    )
    restart_after_s: float = field(
        default=60.0,
        metadata=_env("SLIPSTREAM_RESTART_AFTER", "seconds of failing checks before a live instance is restarted"),
    )
    backup_interval_s: float = field(
        default=86400.0, metadata=_env("SLIPSTREAM_BACKUP_INTERVAL", "seconds between scheduled database backups")
    )
    backup_retention: int = field(
        default=7, metadata=_env("SLIPSTREAM_BACKUP_RETENTION", "scheduled backups (and base backups) kept")
    )
    python_installer: str = field(
        default="uv",
        metadata=_env(
            "SLIPSTREAM_PYTHON_INSTALLER",
            "`uv`: a Python build's `pip install` runs `uv pip install` (4-6x faster; other pip commands stay pip; "
            "pip itself where no uv binary is found); `pip`: pip itself",
        ),
    )
    builds_kept: int = field(
        default=5,
        metadata=_env(
            "SLIPSTREAM_BUILDS_KEPT",
            "successful deploys per service whose builds stay on disk for rollbacks (besides the live one)",
        ),
    )
    min_free_mb: int = field(
        default=1024,
        metadata=_env("SLIPSTREAM_MIN_FREE_MB", "megabytes the state disk must have free for a build to start"),
    )
    log_retention_days: float = field(
        default=7.0, metadata=_env("SLIPSTREAM_LOG_RETENTION_DAYS", "days of logs kept for 'slipstream logs'")
    )
    log_max_mb: int = field(
        default=1024, metadata=_env("SLIPSTREAM_LOG_MAX_MB", "most megabytes the log store keeps (oldest go first)")
    )
    log_drains: tuple[str, ...] = field(
        default=(),
        metadata=_env(
            "SLIPSTREAM_LOG_DRAINS",
            "where every log line is also sent, comma-separated: syslog://host:port, syslog+tls://, http(s)://",
        ),
    )
    instance_ports: tuple[int, int] = field(
        default=(20000, 29999),
        metadata=_env(
            "SLIPSTREAM_INSTANCE_PORTS",
            "the loopback ports instances get (low-high), outside the kernel's ephemeral range",
        ),
    )
    proxy_services: int = field(
        default=64,
        metadata=_env(
            "SLIPSTREAM_PROXY_SERVICES",
            "web services HAProxy can route (backends it declares at start; changing it needs `down`, then `up`; "
            "each costs HAProxy memory: ~14 MB RSS at 64, ~33 MB at 256, so raise it only for more services)",
        ),
    )
    proxy_private_services: int = field(
        default=8,
        metadata=_env(
            "SLIPSTREAM_PROXY_PRIVATE_SERVICES", "private services HAProxy can listen for (one loopback port each)"
        ),
    )
    proxy_slots: int = field(
        default=16,
        metadata=_env(
            "SLIPSTREAM_PROXY_SLOTS",
            "server slots per service: old and new instances together during a deploy (so half of it per service)",
        ),
    )
    access_log: str = field(
        default="on",
        metadata=_env(
            "SLIPSTREAM_ACCESS_LOG",
            "`off`: HAProxy logs no requests (no `http` log lines, no latency percentiles; about a core per "
            "10,000 requests/s back)",
        ),
    )
    metrics_interval_s: float = field(
        default=10.0, metadata=_env("SLIPSTREAM_METRICS_INTERVAL", "seconds between metric collection rounds")
    )
    metrics_listen: str | None = field(
        default=None,
        metadata=_env("SLIPSTREAM_METRICS_LISTEN", "a loopback host:port serving /metrics for a Prometheus to scrape"),
    )
    alert_webhook_url: str | None = field(
        default=None, metadata=_env("SLIPSTREAM_ALERT_WEBHOOK_URL", "where alerts are posted (JSON, Slack-compatible)")
    )
    alert_webhook_secret: str | None = field(
        default=None,
        metadata=_env("SLIPSTREAM_ALERT_WEBHOOK_SECRET", "signs each alert post (HMAC-SHA256 of timestamp.body)"),
    )
    smtp_host: str | None = field(default=None, metadata=_env("SLIPSTREAM_SMTP_HOST", "SMTP server for alert mail"))
    smtp_port: int = field(default=25, metadata=_env("SLIPSTREAM_SMTP_PORT", "its port"))
    smtp_from: str | None = field(default=None, metadata=_env("SLIPSTREAM_SMTP_FROM", "alert mail's sender"))
    smtp_to: tuple[str, ...] = field(
        default=(), metadata=_env("SLIPSTREAM_SMTP_TO", "alert mail's recipients, comma-separated")
    )
    smtp_starttls: str = field(default="off", metadata=_env("SLIPSTREAM_SMTP_STARTTLS", "`on` to use STARTTLS"))
    api_listen: tuple[str, int] | None = field(
        default=None,
        metadata=_env(
            "SLIPSTREAM_API_LISTEN",
            "host:port where the daemon also serves its API over TLS to holders of a token "
            "(e.g. 0.0.0.0:8443; the unix socket stays)",
        ),
    )
    api_cert: Path | None = field(
        default=None,
        metadata=_env(
            "SLIPSTREAM_API_CERT", "the TLS certificate (PEM) for that listener (default: one slipstream makes)"
        ),
    )
    api_key: Path | None = field(
        default=None, metadata=_env("SLIPSTREAM_API_KEY", "its private key (PEM); set both or neither")
    )
    api_url: str | None = field(
        default=None,
        metadata=_env(
            "SLIPSTREAM_API_URL", "the CLI talks to this daemon (https://host:8443) instead of the local socket"
        ),
    )
    token: str | None = field(
        default=None,
        repr=False,
        metadata=_env("SLIPSTREAM_TOKEN", "the CLI's bearer token for SLIPSTREAM_API_URL ('slipstream tokens create')"),
    )
    api_ca: Path | None = field(
        default=None,
        metadata=_env(
            "SLIPSTREAM_API_CA",
            "the CA certificate the CLI trusts for SLIPSTREAM_API_URL (default: the system's); "
            "see 'slipstream tokens ca'",
        ),
    )
    memory_cgroups: str = field(
        default="auto",
        metadata=_env(
            "SLIPSTREAM_MEMORY_CGROUPS",
            "`auto`: memory caps by cgroup where the machine allows; `off`: the RSS watchdog alone",
        ),
    )
    cpu_limits: str = field(
        default="plan",
        metadata=_env(
            "SLIPSTREAM_CPU_LIMITS",
            "`plan`: each instance gets its plan's CPU share (free 0.1 … pro ultra 8, capped at the machine's "
            "cores) by cgroup; `off`: no CPU limit",
        ),
    )
    build_slots: int = field(
        default=0,
        metadata=_env(
            "SLIPSTREAM_BUILD_SLOTS",
            "most builds that run at once (0: one per CPU core); more wait their turn, as a blueprint's "
            "200 services would otherwise fight over two cores",
        ),
    )
    pids_max: int = field(
        default=512,
        metadata=_env("SLIPSTREAM_PIDS_MAX", "most processes and threads one instance may have (0: no limit)"),
    )
    events_kept_days: float = field(
        default=30.0, metadata=_env("SLIPSTREAM_EVENTS_KEPT_DAYS", "days of platform events kept in the state database")
    )
    events_max: int = field(
        default=100_000,
        metadata=_env("SLIPSTREAM_EVENTS_MAX", "most platform events kept in the state database (oldest go first)"),
    )

    service_users: str = field(
        default="auto",
        metadata=_env(
            "SLIPSTREAM_SERVICE_USERS",
            "`auto`: as root, each native service builds and runs as its own system user (`slip-<service>`); "
            "`off`: everything runs as the daemon's user",
        ),
    )

    @property
    def service_users_on(self) -> bool:
        """Whether services run as their own users (only a root daemon can switch users)."""
        return self.service_users == "auto" and os.geteuid() == 0

    # Derived paths ---------------------------------------------------------------------------
    @property
    def state_db(self) -> Path:
        return self.home / "state.db"

    @property
    def master_key(self) -> Path:
        return self.home / "master.key"

    @property
    def builds_dir(self) -> Path:
        return self.home / "builds"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def instances_dir(self) -> Path:
        return self.home / "instances"

    @property
    def postgres_dir(self) -> Path:
        return self.home / "postgres"

    @property
    def keyvalue_dir(self) -> Path:
        return self.home / "keyvalue"

    @property
    def backups_dir(self) -> Path:
        return self.home / "backups"

    @property
    def proxy_dir(self) -> Path:
        return self.home / "proxy"

    @property
    def disks_dir(self) -> Path:
        return self.home / "disks"

    @property
    def logs_db(self) -> Path:
        return self.home / "logs.db"

    @property
    def metrics_db(self) -> Path:
        return self.home / "metrics.db"

    @property
    def alerts_db(self) -> Path:
        return self.home / "alerts.db"

    @property
    def podman_dir(self) -> Path:
        return self.home / "podman"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def access_socket(self) -> Path:
        return self.run_dir / "access.sock"

    @property
    def api_socket(self) -> Path:
        return self.run_dir / "api.sock"

    @property
    def daemon_pidfile(self) -> Path:
        return self.run_dir / "daemon.pid"

    @property
    def api_tls_dir(self) -> Path:
        return self.home / "api-tls"

    @property
    def daemon_log(self) -> Path:
        return self.home / "daemon.log"

    def _private_dirs(self) -> tuple[Path, ...]:
        return (self.builds_dir, self.cache_dir, self.instances_dir, self.backups_dir, self.proxy_dir, self.run_dir,
                self.disks_dir)  # fmt: skip

    def ensure_dirs(self) -> None:
        """Create the directory tree, private to root (also where an older version left it open):
        the home is traversable only, every directory in it 0700 and every file 0600, except
        ``postgres/`` and ``keyvalue/``, whose servers' own users must reach what they own there,
        and with service users ``builds/``, ``cache/`` and ``disks/``: traversable (0711) to each
        service's own area (``osusers.ServiceUsers``), and ``run/`` to HAProxy's access-log socket."""
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o711)  # traversable, not listable: the postgres user needs to reach postgres/
        for d in (*self._private_dirs(), self.podman_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        for f in (self.state_db, self.logs_db, self.metrics_db, self.alerts_db, self.daemon_log):
            os.close(os.open(f, os.O_WRONLY | os.O_CREAT, 0o600))  # SQLite gives its WAL the file's mode
        shared = {self.postgres_dir.name, self.keyvalue_dir.name}
        traversable = {d.name for d in self._service_dirs()} if self.service_users_on else set()
        for entry in self.home.iterdir():
            if entry.is_symlink() or entry.name in shared or entry.stat().st_uid != os.geteuid():
                continue
            os.chmod(entry, 0o711 if entry.name in traversable else 0o700 if entry.is_dir() else 0o600)

    def _service_dirs(self) -> tuple[Path, ...]:
        return (self.builds_dir, self.cache_dir, self.disks_dir, self.run_dir)


def _number(kind: type[int] | type[float], minimum: float) -> Callable[[str, str], Any]:
    def parse(name: str, raw: str) -> Any:
        try:
            value = kind(raw)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise SettingsError(f"{name} has value {raw!r}: not {what}") from None
        if value < minimum:
            raise SettingsError(f"{name} has value {raw!r}: must be at least {minimum:g}")
        return value

    return parse


def _choice(*allowed: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise SettingsError(f"{name} has value {raw!r}: use one of {', '.join(allowed)}")
        return value

    return parse


def _addresses(name: str, raw: str) -> tuple[str, ...]:
    items = tuple(a.strip() for a in raw.split(",") if a.strip())
    if not items:
        raise SettingsError(f"{name} has value {raw!r}: give one or more addresses, comma-separated")
    return items


def _failpoints(name: str, raw: str) -> tuple[str, ...]:
    try:
        return failpoints.parse(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} has value {raw!r}: {exc}") from None


def _text(name: str, raw: str) -> str:
    return raw


def _port(name: str, raw: str) -> int:
    port: int = _number(int, 1)(name, raw)
    if port > 65535:
        raise SettingsError(f"{name} has value {raw!r}: not a TCP port (1-65535)")
    return port


def _port_range(name: str, raw: str) -> tuple[int, int]:
    low, sep, high = raw.partition("-")
    if not sep:
        raise SettingsError(f"{name} has value {raw!r}: not a range like 20000-29999")
    lo, hi = _port(name, low.strip()), _port(name, high.strip())
    if lo > hi:
        raise SettingsError(f"{name} has value {raw!r}: the low end is above the high end")
    return lo, hi


def _host_port(name: str, raw: str) -> tuple[str, int]:
    host, sep, port = raw.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host:
        raise SettingsError(f"{name} has value {raw!r}: not host:port (like 127.0.0.1:8443 or 0.0.0.0:8443)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise SettingsError(f"{name} has value {raw!r}: {host!r} is not an IP address") from None
    try:
        return host, _port(name, port)
    except SettingsError:
        raise SettingsError(f"{name} has value {raw!r}: {port!r} is not a TCP port (1-65535)") from None


def _https_url(name: str, raw: str) -> str:
    url = raw.strip().rstrip("/")
    if not url.startswith("https://") or len(url) <= len("https://"):
        raise SettingsError(f"{name} has value {raw!r}: not an https:// URL (the remote API always uses TLS)")
    return url


def _file(name: str, raw: str) -> Path:
    return Path(raw).expanduser().resolve()


# How each field's text becomes its value (fields not named here are plain text).
PARSERS: dict[str, Callable[[str, str], Any]] = {
    "home": lambda name, raw: Path(raw).expanduser().resolve(),
    "http_port": _port,
    "postgres_admin_url": lambda name, raw: raw or None,
    "postgres_listen": _addresses,
    "keyvalue_listen": _addresses,
    "health_deadline_s": _number(float, 0.1),
    "min_healthy_s": _number(float, 0),
    "settle_s": _number(float, 0),
    "worker_grace_s": _number(float, 0),
    "overlap": _choice("override", "wait"),
    "failpoints": _failpoints,
    "cron_max_s": _number(float, 1),
    "live_check_interval_s": _number(float, 0.1),
    "unroute_after_s": _number(float, 0),
    "restart_after_s": _number(float, 0),
    "backup_interval_s": _number(float, 1),
    "backup_retention": _number(int, 1),
    "memory_cgroups": _choice("auto", "off"),
    "cpu_limits": _choice("plan", "off"),
    "build_slots": _number(int, 0),
    "pids_max": _number(int, 0),
    "events_kept_days": _number(float, 0.001),
    "events_max": _number(int, 100),
    "service_users": _choice("auto", "off"),
    "log_drains": _addresses,
    "metrics_interval_s": _number(float, 0.5),
    "smtp_port": _port,
    "smtp_to": _addresses,
    "smtp_starttls": _choice("on", "off"),
    "access_log": _choice("on", "off"),
    "instance_ports": _port_range,
    "proxy_services": _number(int, 1),
    "proxy_private_services": _number(int, 1),
    "proxy_slots": _number(int, 2),
    "builds_kept": _number(int, 1),
    "python_installer": _choice("uv", "pip"),
    "min_free_mb": _number(int, 0),
    "log_retention_days": _number(float, 0.0001),
    "log_max_mb": _number(int, 16),
    "api_listen": _host_port,
    "api_cert": _file,
    "api_key": _file,
    "api_url": _https_url,
    "api_ca": _file,
}


@dataclass(frozen=True)
class Knob:
    """One setting as the docs list it."""

    env: str
    field: str
    default: str
    doc: str


def knobs() -> list[Knob]:
    """Every ``SLIPSTREAM_*`` variable, its field, default and doc line (docs/operations.md)."""
    out = []
    for f in fields(Settings):
        default = "" if f.name == "home" else f.default
        if isinstance(default, tuple):  # a port range (numbers) is written low-high, lists comma-separated
            shown = ("-" if all(isinstance(x, int) for x in default) else ",").join(map(str, default))
        else:
            shown = "" if default is None else str(default)
        out.append(Knob(f.metadata["env"], f.name, shown, f.metadata["doc"]))
    return out


def default_home() -> Path:
    """``~/.local/share/slipstream``; for root ``/var/lib/slipstream`` (PostgreSQL, which runs as an
    unprivileged user, cannot reach into root's 0700 home directory)."""
    if os.geteuid() == 0:
        return Path("/var/lib/slipstream")
    return Path.home() / ".local/share/slipstream"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default: the process environment)."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {"home": default_home().resolve()}
    for f in fields(Settings):
        name = f.metadata["env"]
        raw = env.get(name)
        if raw is None or (raw.strip() == "" and f.name != "postgres_admin_url"):
            continue
        values[f.name] = PARSERS.get(f.name, _text)(name, raw)
    if ("api_cert" in values) != ("api_key" in values):
        raise SettingsError("SLIPSTREAM_API_CERT and SLIPSTREAM_API_KEY go together: set both or neither")
    return Settings(**values)


def child_environment(**extra: str) -> dict[str, str]:
    """This process's environment plus ``extra``, for a tool the CLI hands over to (psql, redis-cli)."""
    return {**os.environ, **extra}


def base_environment() -> dict[str, str]:
    """The parts of the daemon's own environment that app processes inherit (PATH, locale, HOME)."""
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TZ", "TMPDIR", "USER", "LOGNAME")
    return {k: os.environ[k] for k in keep if k in os.environ}
