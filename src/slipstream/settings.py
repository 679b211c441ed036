"""Settings, read once from the environment. The only module that reads ``os.environ``.

Every path slipstream writes is derived from ``home`` (``$SLIPSTREAM_HOME``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


class SettingsError(ValueError):
    """Raised when an environment variable holds a value slipstream cannot use."""


def _int(env: dict[str, str], key: str, default: int) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{key} has value {raw!r}: not a whole number") from None


@dataclass(frozen=True)
class Settings:
    """Where slipstream keeps its state and which loopback ports it uses."""

    home: Path
    http_port: int = 8080  # HAProxy's public HTTP listener (web services, static sites)
    bind_host: str = "127.0.0.1"  # address HAProxy listens on
    postgres_admin_url: str | None = None  # an existing server to use instead of the embedded cluster
    health_deadline_s: float = 900.0  # Render: a deploy is canceled after 15 minutes unhealthy
    drain_timeout_s: float | None = None  # None: the service's maxShutdownDelaySeconds
    extra: dict[str, str] = field(default_factory=dict)

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
    def backups_dir(self) -> Path:
        return self.home / "backups"

    @property
    def proxy_dir(self) -> Path:
        return self.home / "proxy"

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def api_socket(self) -> Path:
        return self.run_dir / "api.sock"

    @property
    def daemon_pidfile(self) -> Path:
        return self.run_dir / "daemon.pid"

    @property
    def daemon_log(self) -> Path:
        return self.home / "daemon.log"

    def ensure_dirs(self) -> None:
        """Create the directory tree; secrets inside are 0600 files."""
        self.home.mkdir(parents=True, exist_ok=True)
        os.chmod(self.home, 0o711)  # traversable, not listable: the postgres user needs to reach postgres/
        for d in (self.builds_dir, self.cache_dir, self.instances_dir, self.backups_dir, self.proxy_dir, self.run_dir):
            d.mkdir(parents=True, exist_ok=True)


def default_home() -> Path:
    """``~/.local/share/slipstream``; for root ``/var/lib/slipstream`` (PostgreSQL, which runs as an
    unprivileged user, cannot reach into root's 0700 home directory)."""
    if os.geteuid() == 0:
        return Path("/var/lib/slipstream")
    return Path.home() / ".local/share/slipstream"


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``env`` (default: the process environment)."""
    env = dict(os.environ if env is None else env)
    home = Path(env.get("SLIPSTREAM_HOME") or default_home())
    return Settings(
        home=home.expanduser().resolve(),
        http_port=_int(env, "SLIPSTREAM_HTTP_PORT", 8080),
        bind_host=env.get("SLIPSTREAM_BIND", "127.0.0.1"),
        postgres_admin_url=env.get("SLIPSTREAM_POSTGRES_ADMIN_URL") or None,
        health_deadline_s=float(_int(env, "SLIPSTREAM_HEALTH_DEADLINE", 900)),
        extra={k: v for k, v in env.items() if k.startswith("SLIPSTREAM_")},
    )


def base_environment() -> dict[str, str]:
    """The parts of the daemon's own environment that app processes inherit (PATH, locale, HOME)."""
    keep = ("PATH", "LANG", "LC_ALL", "HOME", "TZ", "TMPDIR", "USER", "LOGNAME")
    return {k: os.environ[k] for k in keep if k in os.environ}
