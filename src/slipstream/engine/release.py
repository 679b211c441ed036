"""What runs: a :class:`Release` is one build plus the settings and env it runs with.

Pure functions turn a blueprint service into a Release and a Release plus instance facts into the
exact environment an instance gets. Releases are stored encrypted with each deploy, so a rollback
runs the earlier release exactly as it ran.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from slipstream.state.store import BuildRecord

DEFAULT_SHUTDOWN_DELAY = 30


@dataclass(frozen=True)
class Release:
    """A service's runnable settings (the build is referenced by the deploy, not here)."""

    service: str
    type: str
    runtime: str
    start_command: str | None
    build_command: str | None
    pre_deploy_command: str | None
    health_check_path: str | None
    num_instances: int = 1
    shutdown_delay_s: float = DEFAULT_SHUTDOWN_DELAY
    root_dir: str | None = None
    branch: str | None = None
    hosts: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    secret_keys: tuple[str, ...] = ()  # keys whose values come from secret sources
    databases: tuple[str, ...] = ()  # blueprint databases the env refers to (snapshotted before pre-deploy)
    schedule: str | None = None  # cron jobs
    singleton: bool = False  # workers: stop the old release before starting the new one
    disk: Mapping[str, Any] | None = None  # {name, mount_path, size_gb}: stop old first, keep data
    memory_limit_mb: int | None = None
    cpus: float | None = None  # the plan's CPU share in cores
    static: Mapping[str, Any] | None = None  # static sites: {publish_path, routes, headers}
    # container services: {dockerfile_path, docker_context, docker_command, image_url}
    container: Mapping[str, Any] | None = None
    # checks run right after the flip: {path, status, contains, command, timeout_seconds}
    smoke_checks: tuple[Mapping[str, Any], ...] = ()
    alerts: Mapping[str, Any] | None = None  # the blueprint's alert settings: {rule: {threshold, ...}}

    @property
    def stop_first(self) -> bool:
        """Whether two releases must never overlap (a persistent disk, or a singleton worker)."""
        return self.disk is not None or (self.type == "worker" and self.singleton)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hosts"] = list(self.hosts)
        d["secret_keys"] = list(self.secret_keys)
        d["databases"] = list(self.databases)
        d["disk"] = dict(self.disk) if self.disk else None
        d["static"] = dict(self.static) if self.static else None
        d["container"] = dict(self.container) if self.container else None
        d["env"] = dict(self.env)
        d["smoke_checks"] = [dict(c) for c in self.smoke_checks]
        d["alerts"] = {k: dict(v) for k, v in self.alerts.items()} if self.alerts else None
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Release:
        names = {f.name for f in fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        d["hosts"] = tuple(d.get("hosts", ()))
        d["secret_keys"] = tuple(d.get("secret_keys", ()))
        d["databases"] = tuple(d.get("databases", ()))
        d["smoke_checks"] = tuple(d.get("smoke_checks", ()))
        return cls(**d)

    def public(self) -> dict[str, Any]:
        """The release without env values (keys only), safe to show."""
        d = self.to_dict()
        d["env"] = sorted(self.env)
        return d


@dataclass(frozen=True)
class BuildRef:
    """The parts of a finished build an instance needs."""

    build_id: int
    commit: str | None
    workdir: Path
    path_prefix: tuple[str, ...]
    extra_env: Mapping[str, str]
    image: str | None = None  # container services: the image the instances run

    @classmethod
    def of(cls, b: BuildRecord) -> BuildRef:
        """The reference to a recorded build (its workdir must be set)."""
        return cls(b.id, b.commit_sha, Path(b.workdir or "."), tuple(b.path_prefix), dict(b.extra_env), b.image)


def hostname(service: str) -> str:
    """The local hostname a web service answers at."""
    return f"{service}.localhost"


def instance_env(
    release: Release,
    *,
    base: Mapping[str, str],
    path_prefix: Sequence[str],
    extra: Mapping[str, str],
    port: int | None,
    instance_id: str,
    commit: str | None,
    http_port: int,
) -> dict[str, str]:
    """The complete environment of one instance: base, build extras, Render's variables, the env, PORT."""
    env = dict(base)
    env.update(extra)
    if path_prefix:
        env["PATH"] = ":".join([*path_prefix, env.get("PATH", "/usr/local/bin:/usr/bin:/bin")])
    host = release.hosts[0] if release.hosts else hostname(release.service)
    env.update(
        {
            "RENDER": "true",
            "IS_PULL_REQUEST": "false",
            "RENDER_SERVICE_NAME": release.service,
            "RENDER_SERVICE_TYPE": release.type,
            "RENDER_INSTANCE_ID": instance_id,
            "RENDER_GIT_COMMIT": commit or "",
            "RENDER_GIT_BRANCH": release.branch or "",
            "RENDER_EXTERNAL_HOSTNAME": host if release.type == "web" else "",
            "RENDER_EXTERNAL_URL": f"http://{host}:{http_port}" if release.type == "web" else "",
        }
    )
    env.update(release.env)
    if port is not None:
        env["PORT"] = str(port)
    return env
