"""Turn a blueprint service into a :class:`Release`: resolve every env source into a value.

Generated values (``generateValue``) are made once and kept encrypted in the store, so they stay
stable across deploys; ``sync: false`` values must already have been given (``slipstream env set``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from slipstream.blueprint import Blueprint, BlueprintError
from slipstream.blueprint.env import fit_manifest, needed_generated, needed_synced, resolve_env
from slipstream.engine.release import DEFAULT_SHUTDOWN_DELAY, Release, hostname
from slipstream.errors import InvalidInput
from slipstream.secrets import generate_value, looks_secret
from slipstream.state.store import Store

# Memory per instance type, in MB (Render's published sizes); an instance over it is restarted.
PLAN_MEMORY_MB = {
    "free": 512,
    "starter": 512,
    "standard": 2048,
    "pro": 4096,
    "pro plus": 8192,
    "pro_plus": 8192,
    "pro max": 16384,
    "pro_max": 16384,
    "pro ultra": 32768,
    "pro_ultra": 32768,
}


def memory_limit(spec: Any) -> int | None:
    """The memory cap of a service: its explicit override, else its plan's size, else none."""
    explicit = getattr(spec, "memory_limit_mb", None)
    if explicit:
        return int(explicit)
    return PLAN_MEMORY_MB.get((spec.plan or "").lower()) if spec.plan else None


def _database_props(bp: Blueprint, store: Store, cluster: Any) -> dict[str, dict[str, str]]:
    if not bp.databases:
        return {}
    if cluster is None:
        raise InvalidInput(
            "this blueprint declares databases but the PostgreSQL cluster is not running",
            "restart slipstream with 'slipstream up'",
        )
    out = {}
    for db in bp.databases:
        info = cluster.ensure(
            db.name,
            database_name=db.database_name,
            user=db.user,
            major_version=db.postgres_major_version,
            extensions=db.extensions,
            ip_allow_list=[a.source for a in db.ip_allow_list],
        )
        out[db.name] = info.properties()
    return out


class _Services(Mapping[str, Mapping[str, object]]):
    """What ``fromService`` may read of each service, the env resolved on demand (validate has
    already refused reference loops, so the recursion ends)."""

    def __init__(
        self,
        bp: Blueprint,
        databases: Mapping[str, Mapping[str, str]],
        kept: Mapping[str, str],
        http_port: int,
        private_port: Callable[[str], int] | None = None,
    ) -> None:
        self.bp, self.databases, self.kept, self.http_port = bp, databases, kept, http_port
        self.private_port = private_port
        self._memo: dict[str, dict[str, object]] = {}

    def __getitem__(self, name: str) -> Mapping[str, object]:
        if name not in self._memo:
            other = self.bp.service(name)  # KeyError when absent, as a Mapping should
            if other.type == "pserv" and self.private_port is not None:
                host, port = "127.0.0.1", self.private_port(name)  # stable across deploys
            else:
                host, port = hostname(name), self.http_port
            facts: dict[str, object] = {"host": host, "port": str(port), "hostport": f"{host}:{port}"}
            self._memo[name] = facts
            facts["env"] = resolve_env(
                self.bp, other, databases=self.databases, services=self, generated=self.kept, synced=self.kept
            )
        return self._memo[name]

    def __iter__(self) -> Iterator[str]:
        return iter(s.name for s in self.bp.services)

    def __len__(self) -> int:
        return len(self.bp.services)


OVERRIDES_KEY = "overrides:{service}"


def env_overrides(store: Store, service: str) -> dict[str, Any]:
    """Values set with 'slipstream env set' (and keys unset), applied over the blueprint's env."""
    raw = store.kept_values().get(OVERRIDES_KEY.format(service=service))
    return json.loads(raw) if raw else {"set": {}, "unset": []}


def save_env_overrides(store: Store, service: str, overrides: Mapping[str, Any]) -> None:
    store.keep_value(OVERRIDES_KEY.format(service=service), json.dumps(overrides, sort_keys=True))


def release_for(
    bp: Blueprint,
    spec: Any,
    store: Store,
    cluster: Any = None,
    http_port: int = 8080,
    private_port: Callable[[str], int] | None = None,
    overrides: Mapping[str, Any] | None = None,
    pending: Mapping[str, str] | None = None,
) -> Release:
    """Resolve ``spec`` (a blueprint service) into the Release it would run now; ``overrides`` and
    ``pending`` kept values stand in for what an ``env set`` about to be saved would hold."""
    kept = {**store.kept_values(), **(pending or {})}
    for vid in needed_generated(bp):
        if vid not in kept:
            kept[vid] = generate_value()
            store.keep_value(vid, kept[vid])
    missing = [vid for vid in needed_synced(bp) if vid not in kept and vid.split(".", 1)[0] == spec.name]
    if missing:
        keys = ", ".join(m.split(".", 1)[1] for m in missing)
        raise InvalidInput(
            f"{spec.name} needs values for sync: false variables: {keys}",
            f"set them with 'slipstream env set {spec.name} KEY=VALUE'",
        )
    overrides = overrides if overrides is not None else env_overrides(store, spec.name)
    databases = _database_props(bp, store, cluster)
    services = _Services(bp, databases, kept, http_port, private_port)
    try:
        env = resolve_env(bp, spec, databases=databases, services=services, generated=kept, synced=kept)
    except BlueprintError as exc:
        raise InvalidInput(f"cannot resolve the environment of {spec.name}:\n{exc}") from None
    if overrides["set"] or overrides["unset"]:
        env.update(overrides["set"])
        for key in overrides["unset"]:
            env.pop(key, None)
        try:  # 'env set' values meet the envManifest like the blueprint's own
            env = fit_manifest(bp, spec, env)
        except BlueprintError as exc:
            raise InvalidInput(
                f"the environment of {spec.name} would not fit its envManifest:\n{exc}",
                "choose a value the manifest allows",
            ) from None
    secret_sources = set(overrides["set"])
    for ev in spec.env_vars:
        if ev.key and (ev.generate_value or ev.sync is False or ev.from_database is not None):
            secret_sources.add(ev.key)
    secret_keys = tuple(sorted(k for k in env if k in secret_sources or looks_secret(k)))
    hosts = (hostname(spec.name), *[d for d in (spec.domains or [])])
    used = tuple(sorted({ev.from_database.name for ev in spec.env_vars if ev.from_database is not None}))
    return Release(
        service=spec.name,
        type=spec.type,
        runtime=spec.runtime,
        start_command=spec.start_command,
        build_command=spec.build_command,
        pre_deploy_command=spec.pre_deploy_command,
        health_check_path=spec.health_check_path,
        num_instances=spec.num_instances or 1,
        shutdown_delay_s=float(spec.max_shutdown_delay_seconds or DEFAULT_SHUTDOWN_DELAY),
        root_dir=spec.root_dir,
        branch=spec.branch,
        hosts=hosts,
        env=env,
        secret_keys=secret_keys,
        databases=used,
        schedule=spec.schedule,
        singleton=bool(getattr(spec, "singleton", False)),
        disk={"name": spec.disk.name, "mount_path": spec.disk.mount_path, "size_gb": spec.disk.size_gb}
        if spec.disk
        else None,
        memory_limit_mb=memory_limit(spec),
        static={
            "publish_path": spec.static_publish_path or ".",
            "routes": [{"type": r.type, "source": r.source, "destination": r.destination} for r in spec.routes],
            "headers": [{"path": h.path, "name": h.name, "value": h.value} for h in spec.headers],
        }
        if spec.is_static
        else None,
    )
