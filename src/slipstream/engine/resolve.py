"""Turn a blueprint service into a :class:`Release`: resolve every env source into a value.

Generated values (``generateValue``) are made once and kept encrypted in the store, so they stay
stable across deploys; ``sync: false`` values must already have been given (``slipstream env set``).
"""

from __future__ import annotations

from typing import Any

from slipstream.blueprint import Blueprint, BlueprintError
from slipstream.blueprint.env import needed_generated, needed_synced, resolve_env
from slipstream.engine.release import DEFAULT_SHUTDOWN_DELAY, Release, hostname
from slipstream.errors import InvalidInput
from slipstream.secrets import generate_value, looks_secret
from slipstream.state.store import Store


def _database_props(bp: Blueprint, store: Store, cluster: Any) -> dict[str, dict[str, str]]:
    if not bp.databases:
        return {}
    if cluster is None:
        raise InvalidInput("this blueprint declares databases but the PostgreSQL cluster is not running",
                           "restart slipstream with 'slipstream up'")
    out = {}
    for db in bp.databases:
        info = cluster.ensure(db.name, database_name=db.database_name, user=db.user)
        out[db.name] = info.properties()
    return out


def release_for(bp: Blueprint, spec: Any, store: Store, cluster: Any = None) -> Release:
    """Resolve ``spec`` (a blueprint service) into the Release it would run now."""
    kept = store.kept_values()
    for vid in needed_generated(bp):
        if vid not in kept:
            kept[vid] = generate_value()
            store.keep_value(vid, kept[vid])
    missing = [vid for vid in needed_synced(bp) if vid not in kept and vid.split(".", 1)[0] == spec.name]
    if missing:
        keys = ", ".join(m.split(".", 1)[1] for m in missing)
        raise InvalidInput(f"{spec.name} needs values for sync: false variables: {keys}",
                           f"set them with 'slipstream env set {spec.name} KEY=VALUE'")
    services = {}
    for other in bp.services:
        host = hostname(other.name)
        services[other.name] = {"host": host, "port": "", "hostport": host, "env": {}}
    try:
        env = resolve_env(bp, spec, databases=_database_props(bp, store, cluster), services=services,
                          generated=kept, synced=kept)
    except BlueprintError as exc:
        raise InvalidInput(f"cannot resolve the environment of {spec.name}:\n{exc}") from None
    secret_sources = set()
    for ev in spec.env_vars:
        if ev.key and (ev.generate_value or ev.sync is False or ev.from_database is not None):
            secret_sources.add(ev.key)
    secret_keys = tuple(sorted(k for k in env if k in secret_sources or looks_secret(k)))
    hosts = (hostname(spec.name), *[d for d in (spec.domains or [])])
    databases = tuple(sorted({ev.from_database.name for ev in spec.env_vars if ev.from_database is not None}))
    return Release(
        service=spec.name, type=spec.type, runtime=spec.runtime, start_command=spec.start_command,
        build_command=spec.build_command, pre_deploy_command=spec.pre_deploy_command,
        health_check_path=spec.health_check_path, num_instances=spec.num_instances or 1,
        shutdown_delay_s=float(spec.max_shutdown_delay_seconds or DEFAULT_SHUTDOWN_DELAY),
        root_dir=spec.root_dir, branch=spec.branch, hosts=hosts, env=env, secret_keys=secret_keys,
        databases=databases)
